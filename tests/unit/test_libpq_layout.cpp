// PGconn's layout derived from libpq's accessors: on the bytes of Debian
// 12's libpq 15 (libpq5 15.18-0+deb12u1, copied with xxd at the addresses
// `gdb -batch -ex 'disassemble PQstatus'` gives), on the libpq installed
// here, on another code layout of the same C, and refusals of code that
// does not match.
#include <catch2/catch.hpp>
#include <filesystem>

#include "accessor_paths.h"
#include "libpq_layout.h"
#include "libpq_layout_file.h"

using namespace connleak;

namespace {

AccessorCode debian_libpq15()
{
    AccessorCode code;
    code["PQtransactionStatus"] = {0xb8, 0x04, 0x00, 0x00, 0x00, 0x48, 0x85, 0xff, 0x74, 0x26, 0x8b, 0x8f, 0x58,
                                   0x01, 0x00, 0x00, 0x85, 0xc9, 0x75, 0x1c, 0x8b, 0x97, 0x5c, 0x01, 0x00, 0x00,
                                   0xb8, 0x01, 0x00, 0x00, 0x00, 0x85, 0xd2, 0x75, 0x0d, 0x8b, 0x87, 0x60, 0x01,
                                   0x00, 0x00, 0xc3, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3};
    code["PQbackendPID"] = {0x31, 0xc0, 0x48, 0x85, 0xff, 0x74, 0x19, 0x8b, 0x97, 0x58, 0x01,
                            0x00, 0x00, 0x85, 0xd2, 0x75, 0x0f, 0x8b, 0x87, 0x08, 0x03, 0x00,
                            0x00, 0xc3, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc3};
    code["PQstatus"] = {0x48, 0x85, 0xff, 0x74, 0x0b, 0x8b, 0x87, 0x58, 0x01, 0x00, 0x00,
                        0xc3, 0x0f, 0x1f, 0x40, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0xc3};
    code["PQsocket"] = {0x48, 0x85, 0xff, 0x74, 0x07, 0x8b, 0x87, 0xb8, 0x01,
                        0x00, 0x00, 0xc3, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xc3};
    code["PQdb"] = {0x48, 0x85, 0xff, 0x74, 0x0b, 0x48, 0x8b, 0x47, 0x48, 0xc3,
                    0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x31, 0xc0, 0xc3};
    code["PQuser"] = {0x48, 0x85, 0xff, 0x74, 0x0b, 0x48, 0x8b, 0x47, 0x58, 0xc3,
                      0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x31, 0xc0, 0xc3};
    return code;
}

void check_debian_offsets(const LibpqLayout& l)
{
    CHECK(l.status == 0x158);
    CHECK(l.async_status == 0x15c);
    CHECK(l.xact_status == 0x160);
    CHECK(l.be_pid == 0x308);
    CHECK(l.db_name == 0x48);
    CHECK(l.pguser == 0x58);
    REQUIRE(l.sock.has_value());
    CHECK(*l.sock == 0x1b8);
}

}  // namespace

TEST_CASE("libpq layout: Debian 12's libpq 15 accessors give PGconn's offsets")
{
    auto layout = derive_libpq_layout(debian_libpq15());
    REQUIRE(layout.ok());
    check_debian_offsets(layout.value());
}

TEST_CASE("libpq layout: read from the libpq installed here")
{
    const std::string path = "/usr/lib/x86_64-linux-gnu/libpq.so.5";
    REQUIRE(std::filesystem::exists(path));  // libpq5 is a build dependency (libpq-dev)
    Symbolizer symbols;
    auto layout = read_libpq_layout(symbols, path);
    REQUIRE(layout.ok());
    check_debian_offsets(layout.value());
}

TEST_CASE("libpq layout: the same C laid out otherwise (cmp with memory, branches inverted) is understood")
{
    AccessorCode code = debian_libpq15();
    code["PQtransactionStatus"] = {0x48, 0x85, 0xff,                          // test %rdi,%rdi
                                   0x75, 0x06,                                // jne +6
                                   0xb8, 0x04, 0x00, 0x00, 0x00,              // mov $4,%eax
                                   0xc3,                                      // ret
                                   0x83, 0xbf, 0x58, 0x01, 0x00, 0x00, 0x00,  // cmpl $0,0x158(%rdi)
                                   0x75, 0xf1,                                // jne back to mov $4
                                   0x83, 0xbf, 0x5c, 0x01, 0x00, 0x00, 0x00,  // cmpl $0,0x15c(%rdi)
                                   0xb8, 0x01, 0x00, 0x00, 0x00,              // mov $1,%eax
                                   0x75, 0x06,                                // jne to the last ret
                                   0x8b, 0x87, 0x60, 0x01, 0x00, 0x00,        // mov 0x160(%rdi),%eax
                                   0xc3};
    auto layout = derive_libpq_layout(code);
    REQUIRE(layout.ok());
    check_debian_offsets(layout.value());
}

TEST_CASE("libpq layout: code that does not match is refused, never guessed")
{
    SECTION("PQTRANS_ACTIVE replaced by another constant")
    {
        AccessorCode code = debian_libpq15();
        code["PQtransactionStatus"][27] = 0x02;  // mov $0x2,%eax
        auto layout = derive_libpq_layout(code);
        REQUIRE(!layout.ok());
        CHECK(layout.error().message.find("PQtransactionStatus") != std::string::npos);
    }
    SECTION("the status test inverted (je for jne)")
    {
        AccessorCode code = debian_libpq15();
        code["PQtransactionStatus"][18] = 0x74;
        CHECK(!derive_libpq_layout(code).ok());
    }
    SECTION("PQbackendPID tests another field than PQstatus reads")
    {
        AccessorCode code = debian_libpq15();
        code["PQbackendPID"][9] = 0x50;  // mov 0x150(%rdi),%edx
        auto layout = derive_libpq_layout(code);
        REQUIRE(!layout.ok());
        CHECK(layout.error().message.find("PQbackendPID") != std::string::npos);
    }
    SECTION("an instruction outside the known forms (a call)")
    {
        AccessorCode code = debian_libpq15();
        code["PQstatus"] = {0x48, 0x85, 0xff, 0x74, 0x05, 0xe8, 0x00, 0x00, 0x00, 0x00, 0xc3, 0x31, 0xc0, 0xc3};
        auto layout = derive_libpq_layout(code);
        REQUIRE(!layout.ok());
        CHECK(layout.error().message == "PQstatus: unexpected instruction 0xe8 at +0x5");
    }
    SECTION("a jump out of the code (a tail call)")
    {
        AccessorCode code = debian_libpq15();
        code["PQdb"] = {0x48, 0x85, 0xff, 0x0f, 0x84, 0x00, 0x10, 0x00, 0x00, 0x48, 0x8b, 0x47, 0x48, 0xc3};
        CHECK(!derive_libpq_layout(code).ok());
    }
    SECTION("code cut short")
    {
        AccessorCode code = debian_libpq15();
        code["PQuser"].resize(8);
        CHECK(!derive_libpq_layout(code).ok());
    }
    SECTION("an accessor missing")
    {
        AccessorCode code = debian_libpq15();
        code.erase("PQbackendPID");
        auto layout = derive_libpq_layout(code);
        REQUIRE(!layout.ok());
        CHECK(layout.error().message == "PQbackendPID: not found");
    }
}

TEST_CASE("libpq layout: PQsocket alone not matching leaves only sock unknown")
{
    AccessorCode code = debian_libpq15();
    code["PQsocket"][13] = 0x00;  // returns 0xffffff00 for a null handle
    auto layout = derive_libpq_layout(code);
    REQUIRE(layout.ok());
    CHECK(!layout->sock.has_value());
    CHECK(layout->xact_status == 0x160);
}

TEST_CASE("accessor paths: every branch of PQtransactionStatus, with what it returns")
{
    const std::vector<uint8_t> code = debian_libpq15()["PQtransactionStatus"];
    auto paths = accessor_paths(code.data(), code.size());
    REQUIRE(paths.ok());
    REQUIRE(paths->size() == 4);
    int fields = 0;
    for (const AccessorPath& p : paths.value())
        if (p.result.kind == AccessorValue::Kind::field) {
            ++fields;
            CHECK(p.result == AccessorValue::field(0x160, 4));
            REQUIRE(p.conditions.size() == 3);
            CHECK(p.conditions[0].value == AccessorValue::argument());
            CHECK(!p.conditions[0].zero);
            CHECK(p.conditions[1].value == AccessorValue::field(0x158, 4));
            CHECK(p.conditions[1].zero);
            CHECK(p.conditions[2].value == AccessorValue::field(0x15c, 4));
            CHECK(p.conditions[2].zero);
        }
    CHECK(fields == 1);
}

TEST_CASE("handle state: PQtransactionStatus's rule, split by PQstatus")
{
    auto state = [](int32_t status, int32_t async, int32_t xact) {
        return std::string(conn_state_name(conn_state_of({status, async, xact, 0})));
    };
    CHECK(state(0, 0, 0) == "idle");
    CHECK(state(0, 0, 2) == "in_transaction");
    CHECK(state(0, 0, 3) == "in_error");
    CHECK(state(0, 0, 1) == "busy");
    CHECK(state(0, 1, 0) == "busy");  // PGASYNC_BUSY: a query under way
    CHECK(state(0, 1, 2) == "busy");
    CHECK(state(1, 0, 0) == "broken");
    CHECK(state(2, 0, 0) == "connecting");  // CONNECTION_STARTED
    CHECK(state(0, 0, 4) == "unknown");
    CHECK(state(-5, 0, 0) == "unknown");  // not a live handle's fields
    CHECK(state(0, 1000, 0) == "unknown");
}
