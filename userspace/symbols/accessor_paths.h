// What a tiny x86-64 accessor function returns, path by path: a few
// instruction forms (the ones compilers emit for `if (!p || p->f != 0)
// return K; return p->g;`) decoded and run symbolically, every branch
// taken both ways. Anything else is refused, never guessed: libpq's
// accessors are this simple, and a build whose code is not gets no layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "result.h"

namespace connleak {

// A value the code computes from its first argument (rdi).
struct AccessorValue {
    enum class Kind : uint8_t { unknown, argument, constant, field };
    Kind kind = Kind::unknown;
    int64_t constant = 0;  // constant
    uint32_t offset = 0;   // field: loaded from [argument + offset]...
    uint8_t width = 0;     // ...this many bytes (4 or 8)

    static AccessorValue argument() { return {Kind::argument, 0, 0, 0}; }
    static AccessorValue of_constant(int64_t k) { return {Kind::constant, k, 0, 0}; }
    static AccessorValue field(uint32_t offset, uint8_t width) { return {Kind::field, 0, offset, width}; }
    bool operator==(const AccessorValue& o) const;
    bool operator!=(const AccessorValue& o) const { return !(*this == o); }
    bool operator<(const AccessorValue& o) const;
};

// One branch decision: `value` was (or was not) zero.
struct AccessorCondition {
    AccessorValue value;
    bool zero = false;
};

// A way through the function to a `ret`, and what it returns (eax/rax).
struct AccessorPath {
    std::vector<AccessorCondition> conditions;
    AccessorValue result;
};

// Every path of the function whose code starts at code[0]. Fails on an
// instruction outside the forms known, a jump out of `code`, a compare with
// anything but zero, or more paths or steps than such an accessor has.
Result<std::vector<AccessorPath>> accessor_paths(const uint8_t* code, size_t size);

// "field 0x158/4", "constant 4"... for messages and tests.
std::string describe(const AccessorValue& v);

}  // namespace connleak
