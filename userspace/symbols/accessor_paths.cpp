#include "accessor_paths.h"

#include <array>
#include <cstdio>
#include <tuple>

namespace connleak {
namespace {

// An accessor has a handful of branches; anything longer is not one.
constexpr size_t kMaxPaths = 16;
constexpr size_t kMaxSteps = 64;
constexpr int kRax = 0, kRdi = 7;

struct Walk {
    size_t pc = 0;
    std::array<AccessorValue, 16> regs{};
    bool flags_set = false;
    AccessorValue flags;  // what the last test/cmp compared with zero
    std::vector<AccessorCondition> conditions;
    size_t steps = 0;
};

std::string hex(uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

class Decoder {
public:
    Decoder(const uint8_t* code, size_t size) : code_(code), size_(size) {}

    Result<std::vector<AccessorPath>> run()
    {
        Walk first;
        first.regs[kRdi] = AccessorValue::argument();
        pending_.push_back(first);
        while (!pending_.empty()) {
            Walk w = pending_.back();
            pending_.pop_back();
            if (auto s = follow(w); !s)
                return s.error();
        }
        return paths_;
    }

private:
    Error refuse(const Walk& w, const std::string& what) const { return Error{what + " at +" + hex(w.pc)}; }
    bool have(const Walk& w, size_t n) const { return w.pc + n <= size_; }
    uint8_t at(const Walk& w, size_t i) const { return code_[w.pc + i]; }
    int32_t imm32(size_t pos) const
    {
        return static_cast<int32_t>(static_cast<uint32_t>(code_[pos]) | static_cast<uint32_t>(code_[pos + 1]) << 8 |
                                    static_cast<uint32_t>(code_[pos + 2]) << 16 |
                                    static_cast<uint32_t>(code_[pos + 3]) << 24);
    }

    // A ModRM operand in memory: [base + disp], base holding the argument.
    // Returns its length in bytes after the ModRM byte, or an error.
    Result<size_t> memory_operand(const Walk& w, size_t modrm_pos, uint8_t rex, AccessorValue& base_value,
                                  int64_t& disp) const
    {
        const uint8_t modrm = code_[modrm_pos];
        const int mod = modrm >> 6, rm = modrm & 7;
        if (rm == 4)
            return refuse(w, "SIB addressing");
        if (mod == 0 && rm == 5)
            return refuse(w, "RIP-relative load");
        const size_t disp_len = mod == 1 ? 1 : mod == 2 ? 4 : 0;
        if (modrm_pos + 1 + disp_len > size_)
            return refuse(w, "truncated instruction");
        disp = mod == 1 ? static_cast<int8_t>(code_[modrm_pos + 1]) : mod == 2 ? imm32(modrm_pos + 1) : 0;
        base_value = w.regs[rm | ((rex & 1) << 3)];
        return disp_len;
    }

    Status follow(Walk& w)
    {
        for (;;) {
            if (++w.steps > kMaxSteps)
                return refuse(w, "too many instructions for an accessor");
            if (!have(w, 1))
                return refuse(w, "runs off the end of the code");
            // endbr64, and the multi-byte nops compilers align with.
            if (have(w, 4) && at(w, 0) == 0xf3 && at(w, 1) == 0x0f && at(w, 2) == 0x1e && at(w, 3) == 0xfa) {
                w.pc += 4;
                continue;
            }
            if (at(w, 0) == 0xf3 && have(w, 2) && at(w, 1) == 0xc3) {  // rep ret
                w.pc += 1;
                continue;
            }
            uint8_t rex = 0;
            if (at(w, 0) >= 0x40 && at(w, 0) <= 0x4f) {
                rex = at(w, 0);
                w.pc++;
                if (!have(w, 1))
                    return refuse(w, "truncated instruction");
            }
            const bool wide = rex & 8;
            const uint8_t op = at(w, 0);
            if (op == 0xc3) {
                if (paths_.size() >= kMaxPaths)
                    return refuse(w, "too many paths for an accessor");
                paths_.push_back({w.conditions, w.regs[kRax]});
                return Ok{};
            }
            if (op == 0x90) {
                w.pc++;
                continue;
            }
            if (op >= 0xb8 && op <= 0xbf) {  // mov $imm, r
                const size_t len = wide ? 8 : 4;
                if (!have(w, 1 + len))
                    return refuse(w, "truncated instruction");
                if (wide)
                    return refuse(w, "64-bit immediate");
                w.regs[(op & 7) | ((rex & 1) << 3)] = AccessorValue::of_constant(imm32(w.pc + 1));
                w.pc += 1 + len;
                continue;
            }
            if (op == 0x74 || op == 0x75 || op == 0xeb) {  // je, jne, jmp rel8
                if (!have(w, 2))
                    return refuse(w, "truncated instruction");
                const int64_t target = static_cast<int64_t>(w.pc) + 2 + static_cast<int8_t>(at(w, 1));
                if (auto s = branch(w, op == 0xeb ? 0 : op == 0x74 ? 1 : 2, target, w.pc + 2); !s)
                    return s;
                continue;
            }
            if (op == 0xe9) {  // jmp rel32
                if (!have(w, 5))
                    return refuse(w, "truncated instruction");
                if (auto s = branch(w, 0, static_cast<int64_t>(w.pc) + 5 + imm32(w.pc + 1), w.pc + 5); !s)
                    return s;
                continue;
            }
            if (!have(w, 2))
                return refuse(w, "truncated instruction");
            const uint8_t modrm = at(w, 1);
            const int mod = modrm >> 6;
            const int reg = ((modrm >> 3) & 7) | ((rex & 4) << 1), rm = (modrm & 7) | ((rex & 1) << 3);
            if (op == 0x0f) {
                const uint8_t op2 = at(w, 1);
                if ((op2 == 0x84 || op2 == 0x85) && have(w, 6)) {  // je, jne rel32
                    if (auto s =
                            branch(w, op2 == 0x84 ? 1 : 2, static_cast<int64_t>(w.pc) + 6 + imm32(w.pc + 2), w.pc + 6);
                        !s)
                        return s;
                    continue;
                }
                if (op2 == 0x1f && have(w, 3)) {  // nop r/m
                    const uint8_t nop_modrm = at(w, 2);
                    const int nmod = nop_modrm >> 6, nrm = nop_modrm & 7;
                    size_t len = 3 + (nrm == 4 && nmod != 3 ? 1 : 0) + (nmod == 1 ? 1 : nmod == 2 ? 4 : 0);
                    if (nmod == 0 && nrm == 5)
                        len += 4;
                    w.pc += len;
                    continue;
                }
                return refuse(w, "unexpected instruction 0f " + hex(op2));
            }
            if ((op == 0x31 || op == 0x33) && mod == 3 && reg == rm) {  // xor r, r
                w.regs[reg] = AccessorValue::of_constant(0);
                w.pc += 2;
                continue;
            }
            if (op == 0x85 && mod == 3) {  // test r, r
                if (reg != rm)
                    return refuse(w, "test of two registers");
                w.flags_set = true;
                w.flags = w.regs[reg];
                w.pc += 2;
                continue;
            }
            if ((op == 0x89 || op == 0x8b) && mod == 3) {  // mov r, r
                if (op == 0x89)
                    w.regs[rm] = w.regs[reg];
                else
                    w.regs[reg] = w.regs[rm];
                w.pc += 2;
                continue;
            }
            if (op == 0x8b) {  // mov disp(base), r
                AccessorValue base;
                int64_t disp = 0;
                auto len = memory_operand(w, w.pc + 1, rex, base, disp);
                if (!len)
                    return len.error();
                if (base.kind != AccessorValue::Kind::argument || disp < 0)
                    return refuse(w, "load not from the argument");
                w.regs[reg] = AccessorValue::field(static_cast<uint32_t>(disp), wide ? 8 : 4);
                w.pc += 2 + len.value();
                continue;
            }
            if (op == 0x83) {  // group 1 with imm8
                const int ext = (modrm >> 3) & 7;
                if (mod == 3) {
                    if (!have(w, 3))
                        return refuse(w, "truncated instruction");
                    const int8_t imm = static_cast<int8_t>(at(w, 2));
                    if (ext == 7 && imm == 0) {  // cmp $0, r
                        w.flags_set = true;
                        w.flags = w.regs[rm];
                    } else if (ext == 1 && imm == -1) {  // or $-1, r
                        w.regs[rm] = AccessorValue::of_constant(-1);
                    } else {
                        return refuse(w, "unexpected arithmetic on a register");
                    }
                    w.pc += 3;
                    continue;
                }
                if (ext != 7)
                    return refuse(w, "unexpected arithmetic on memory");
                AccessorValue base;
                int64_t disp = 0;
                auto len = memory_operand(w, w.pc + 1, rex, base, disp);
                if (!len)
                    return len.error();
                const size_t imm_pos = w.pc + 2 + len.value();
                if (imm_pos + 1 > size_)
                    return refuse(w, "truncated instruction");
                if (base.kind != AccessorValue::Kind::argument || disp < 0 || code_[imm_pos] != 0)
                    return refuse(w, "compare other than a field with zero");
                w.flags_set = true;
                w.flags = AccessorValue::field(static_cast<uint32_t>(disp), wide ? 8 : 4);
                w.pc = imm_pos + 1;
                continue;
            }
            return refuse(w, "unexpected instruction " + hex(op));
        }
    }

    // kind 0: jmp; 1: je (taken when flags were zero); 2: jne.
    Status branch(Walk& w, int kind, int64_t target, size_t next)
    {
        if (target < 0 || static_cast<size_t>(target) >= size_)
            return refuse(w, "jump out of the function");
        if (kind == 0) {
            w.pc = static_cast<size_t>(target);
            return Ok{};
        }
        if (!w.flags_set)
            return refuse(w, "branch on flags not set by a test with zero");
        if (pending_.size() + paths_.size() >= kMaxPaths)
            return refuse(w, "too many paths for an accessor");
        Walk taken = w;
        taken.pc = static_cast<size_t>(target);
        taken.conditions.push_back({w.flags, kind == 1});
        pending_.push_back(taken);
        w.conditions.push_back({w.flags, kind != 1});
        w.pc = next;
        return Ok{};
    }

    const uint8_t* code_;
    size_t size_;
    std::vector<Walk> pending_;
    std::vector<AccessorPath> paths_;
};

}  // namespace

bool AccessorValue::operator==(const AccessorValue& o) const
{
    return std::tie(kind, constant, offset, width) == std::tie(o.kind, o.constant, o.offset, o.width);
}

bool AccessorValue::operator<(const AccessorValue& o) const
{
    return std::tie(kind, constant, offset, width) < std::tie(o.kind, o.constant, o.offset, o.width);
}

Result<std::vector<AccessorPath>> accessor_paths(const uint8_t* code, size_t size)
{
    return Decoder(code, size).run();
}

std::string describe(const AccessorValue& v)
{
    switch (v.kind) {
    case AccessorValue::Kind::argument:
        return "argument";
    case AccessorValue::Kind::constant:
        return "constant " + std::to_string(v.constant);
    case AccessorValue::Kind::field:
        return "field " + hex(v.offset) + "/" + std::to_string(v.width);
    case AccessorValue::Kind::unknown:
        break;
    }
    return "unknown";
}

}  // namespace connleak
