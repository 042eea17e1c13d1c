// safe_text and utf8_text take the target's bytes (comm, symbol and file
// names) and must give text that cannot steer a terminal nor break JSON.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "safe_text.h"

namespace {

// An independent look at the output: no C0 control, no DEL, no C1 control
// (U+0080..U+009F, encoded c2 80..c2 9f).
bool has_no_controls(const std::string& s)
{
    for (size_t i = 0; i < s.size(); i++) {
        const auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x20 || b == 0x7f)
            return false;
        if (b == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xa0)
            return false;
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string_view raw(reinterpret_cast<const char*>(data), size);
    const std::string safe = connleak::safe_text(raw);
    const std::string utf8 = connleak::utf8_text(raw);
    FUZZ_CHECK(has_no_controls(safe));
    // Both outputs are what they promise, so a second pass changes nothing.
    FUZZ_CHECK(connleak::safe_text(safe) == safe);
    FUZZ_CHECK(connleak::utf8_text(utf8) == utf8);
    FUZZ_CHECK(connleak::utf8_text(safe) == safe);
    FUZZ_CHECK(safe.size() >= size && utf8.size() >= size);
    return 0;
}
