// Python code objects (see python_code.h).
#include "python_code.h"

#include <algorithm>
#include <cstring>

namespace connleak {
namespace {

// Location table codes (Objects/locations.md).
enum : int {
    kShortMax = 9,   // 0-9: same line, one byte of columns
    kOneLine0 = 10,  // 10-12: line + 0/1/2, two bytes of columns
    kOneLine2 = 12,
    kNoColumns = 13,  // line delta (svarint)
    kLong = 14,       // line delta, end line, start and end columns
    kNone = 15,       // no location
};

struct Reader {
    const uint8_t* p;
    const uint8_t* end;
    bool ok = true;

    uint8_t byte()
    {
        if (p >= end) {
            ok = false;
            return 0;
        }
        return *p++;
    }
    // 6-bit chunks, least significant first; bit 6 says more follow.
    uint32_t varint()
    {
        uint32_t v = 0;
        for (int shift = 0; ok && shift < 32; shift += 6) {
            uint8_t b = byte();
            v |= static_cast<uint32_t>(b & 0x3f) << shift;
            if (!(b & 0x40))
                break;
        }
        return v;
    }
    int svarint()
    {
        uint32_t v = varint();
        return v & 1 ? -static_cast<int>(v >> 1) : static_cast<int>(v >> 1);
    }
};

}  // namespace

int python_line(const uint8_t* table, size_t len, int firstlineno, uint32_t instr)
{
    Reader r{table, table + len};
    int line = firstlineno;
    uint32_t addr = 0;
    while (r.ok && r.p < r.end) {
        const uint8_t first = r.byte();
        if (!(first & 0x80))
            return -1;  // not at an entry: a table we do not understand
        const int code = (first >> 3) & 0x0f;
        const uint32_t units = (first & 0x07) + 1u;
        bool has_line = true;
        if (code <= kShortMax) {
            r.byte();
        } else if (code <= kOneLine2) {
            line += code - kOneLine0;
            r.byte();
            r.byte();
        } else if (code == kNoColumns) {
            line += r.svarint();
        } else if (code == kLong) {
            line += r.svarint();
            r.varint();
            r.varint();
            r.varint();
        } else {
            has_line = false;
        }
        if (!r.ok)
            return -1;
        if (instr < addr + units)
            return has_line ? line : -1;
        addr += units;
    }
    return -1;
}

std::string python_frame_name(const PythonCode& code, uint32_t instr)
{
    const std::string name = code.qualname.empty() ? "?" : code.qualname;
    const std::string file = code.filename.empty() ? "?" : code.filename;
    const int line = python_line(code.linetable.data(), code.linetable.size(), code.firstlineno, instr);
    if (line < 0)
        return name + " (" + file + ")";
    return name + " (" + file + ":" + std::to_string(line) + ")";
}

void PythonCodes::add(const python_code_event& e)
{
    PythonCode c;
    c.qualname.assign(e.qualname, strnlen(e.qualname, sizeof(e.qualname)));
    c.filename.assign(e.filename, strnlen(e.filename, sizeof(e.filename)));
    c.firstlineno = e.firstlineno;
    const size_t n = std::min<size_t>(e.linetable_len, sizeof(e.linetable));
    c.linetable.assign(e.linetable, e.linetable + n);
    codes_[{e.tgid, e.generation, e.code}] = std::move(c);
}

std::string PythonCodes::frame_name(uint32_t pid, uint32_t generation, uint64_t code, uint32_t instr) const
{
    auto it = codes_.find({pid, generation, code});
    return it == codes_.end() ? std::string() : python_frame_name(it->second, instr);
}

void PythonCodes::forget(uint32_t pid)
{
    codes_.erase(codes_.lower_bound({pid, 0, 0}), codes_.lower_bound({pid + 1, 0, 0}));
}

}  // namespace connleak
