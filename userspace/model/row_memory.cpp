#include "row_memory.h"

namespace connleak {

namespace {
RowMemory installed;
bool is_installed = false;
}  // namespace

void install_row_memory(const RowMemory& source)
{
    installed = source;
    is_installed = source.allocate && source.deallocate;
}

const RowMemory* row_memory()
{
    return is_installed ? &installed : nullptr;
}

}  // namespace connleak
