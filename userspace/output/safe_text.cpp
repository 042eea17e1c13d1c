#include "safe_text.h"

#include <cstdio>

namespace connleak {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0.
size_t utf8_length(std::string_view s, size_t i)
{
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = b >= 0xf0 && b <= 0xf4 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 0;
    if (n == 0 || i + n > s.size())
        return 0;
    for (size_t k = 1; k < n; k++)
        if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80)
            return 0;
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if ((b == 0xe0 && b1 < 0xa0) || (b == 0xed && b1 >= 0xa0) || (b == 0xf0 && b1 < 0x90) || (b == 0xf4 && b1 >= 0x90))
        return 0;  // overlong forms, surrogates, beyond U+10FFFF
    return n;
}

}  // namespace

static std::string escape(std::string_view raw, bool keep_controls)
{
    std::string out;
    out.reserve(raw.size());
    for (size_t i = 0; i < raw.size();) {
        const auto b = static_cast<unsigned char>(raw[i]);
        if ((b >= 0x20 || keep_controls) && b < 0x7f) {
            out += raw[i++];
            continue;
        }
        size_t n = b >= 0x80 ? utf8_length(raw, i) : 0;
        // C1 controls (U+0080..U+009F, e.g. CSI) steer some terminals too.
        if (n == 2 && !keep_controls && b == 0xc2 && static_cast<unsigned char>(raw[i + 1]) < 0xa0)
            n = 0;
        if (n) {
            out.append(raw.substr(i, n));
            i += n;
            continue;
        }
        char esc[5];
        std::snprintf(esc, sizeof(esc), "\\x%02x", b);
        out += esc;
        i++;
    }
    return out;
}

std::string safe_text(std::string_view raw)
{
    return escape(raw, false);
}

std::string utf8_text(std::string_view raw)
{
    return escape(raw, true);
}

}  // namespace connleak
