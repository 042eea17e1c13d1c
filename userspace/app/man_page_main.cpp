// Writes connleak(1) to stdout, from the options and prose --help prints, so
// the man page is built with the binary and never drifts from it.
#include <cstdio>

#include "options.h"

int main()
{
    const std::string page = connleak::man_page(connleak::option_help());
    return std::fwrite(page.data(), 1, page.size(), stdout) == page.size() ? 0 : 1;
}
