// parse_maps on every kind of line the kernel writes, read_maps on this
// very process, and the paths path_in_target hands to the ELF reader.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <climits>
#include <cstdint>
#include <string>

#include "proc_maps.h"

using connleak::find_mapping;
using connleak::Mapping;
using connleak::parse_maps;
using connleak::path_in_target;
using connleak::read_maps;

namespace {

// Written the way fs/proc/task_mmu.c pads: the path starts at column 73.
const char* const kMaps =
    "55d0c8a00000-55d0c8a21000 r-xp 00002000 fd:01 1234567                    /usr/bin/app\n"
    "7f12a0000000-7f12a0021000 r-xp 00000000 08:02 42                         /tmp/x (deleted)\n"
    "7f12a0021000-7f12a0042000 rw-p 00000000 00:00 0 \n"
    "7f12a0042000-7f12a0043000 rw-p 00000000 00:00 0\n"
    "7f12a1000000-7f12a1001000 r--p 00001000 103:05 99                        /opt/my app/lib x.so\n"
    "7f12a1001000-7f12a1002000 r-xp 00000000 103:05 100                       /opt/my dir/old lib.so (deleted)\n"
    "7f12a2000000-7f12a2001000 rw-s 00000000 00:01 77                         /memfd:pool (deleted)\n"
    "7ffd1c9fe000-7ffd1ca00000 r-xp 00000000 00:00 0                          [vdso]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";

Mapping expect(uint64_t start, uint64_t end, uint64_t offset, const char* perms, uint32_t maj, uint32_t min,
               uint64_t inode, const char* path, bool deleted)
{
    Mapping m;
    m.start = start;
    m.end = end;
    m.offset = offset;
    m.perms = perms;
    m.dev_major = maj;
    m.dev_minor = min;
    m.inode = inode;
    m.path = path;
    m.deleted = deleted;
    return m;
}

void check_equal(const Mapping& got, const Mapping& want)
{
    CHECK(got.start == want.start);
    CHECK(got.end == want.end);
    CHECK(got.offset == want.offset);
    CHECK(got.perms == want.perms);
    CHECK(got.dev_major == want.dev_major);
    CHECK(got.dev_minor == want.dev_minor);
    CHECK(got.inode == want.inode);
    CHECK(got.path == want.path);
    CHECK(got.deleted == want.deleted);
}

__attribute__((noinline)) int code_in_this_binary(int x)
{
    return x * 7 + 1;
}

}  // namespace

TEST_CASE("parse_maps reads every kind of line", "[proc_maps]")
{
    const std::vector<Mapping> maps = parse_maps(kMaps);
    REQUIRE(maps.size() == 9);
    SECTION("a file")
    {
        check_equal(maps[0],
                    expect(0x55d0c8a00000, 0x55d0c8a21000, 0x2000, "r-xp", 0xfd, 0x01, 1234567, "/usr/bin/app", false));
    }
    SECTION("a deleted file loses its suffix")
    {
        check_equal(maps[1], expect(0x7f12a0000000, 0x7f12a0021000, 0, "r-xp", 8, 2, 42, "/tmp/x", true));
    }
    SECTION("anonymous, with and without trailing padding")
    {
        check_equal(maps[2], expect(0x7f12a0021000, 0x7f12a0042000, 0, "rw-p", 0, 0, 0, "", false));
        check_equal(maps[3], expect(0x7f12a0042000, 0x7f12a0043000, 0, "rw-p", 0, 0, 0, "", false));
    }
    SECTION("spaces in paths, three-digit majors")
    {
        check_equal(maps[4], expect(0x7f12a1000000, 0x7f12a1001000, 0x1000, "r--p", 0x103, 5, 99,
                                    "/opt/my app/lib x.so", false));
        check_equal(maps[5],
                    expect(0x7f12a1001000, 0x7f12a1002000, 0, "r-xp", 0x103, 5, 100, "/opt/my dir/old lib.so", true));
    }
    SECTION("memfd and pseudo paths")
    {
        check_equal(maps[6], expect(0x7f12a2000000, 0x7f12a2001000, 0, "rw-s", 0, 1, 77, "/memfd:pool", true));
        check_equal(maps[7], expect(0x7ffd1c9fe000, 0x7ffd1ca00000, 0, "r-xp", 0, 0, 0, "[vdso]", false));
        check_equal(maps[8], expect(0xffffffffff600000, 0xffffffffff601000, 0, "--xp", 0, 0, 0, "[vsyscall]", false));
    }
}

TEST_CASE("parse_maps skips malformed lines and keeps the rest", "[proc_maps]")
{
    const std::string text = "garbage\n"
                             "\n"
                             "zzzz-1000 r-xp 00000000 00:00 0\n"
                             "1000-2000 r-xp 00000000 00:00\n"          // no inode
                             "1000-2000\n"                              // truncated
                             "2000-1000 r-xp 00000000 00:00 0\n"        // end before start
                             "1000-2000 r-xp 00000000 0001 0\n"         // device without colon
                             "1000-2000 r-xp 00000000 00:00 0x5 /a\n"   // inode not decimal
                             "3000-4000 r-xp 00000010 00:00 5 /ok\r\n"  // CRLF tolerated
                             "5000-6000 r--p 00000000 00:00 6 /last";   // no final newline
    const std::vector<Mapping> maps = parse_maps(text);
    REQUIRE(maps.size() == 2);
    check_equal(maps[0], expect(0x3000, 0x4000, 0x10, "r-xp", 0, 0, 5, "/ok", false));
    check_equal(maps[1], expect(0x5000, 0x6000, 0, "r--p", 0, 0, 6, "/last", false));
    CHECK(parse_maps("").empty());
}

TEST_CASE("named anonymous mappings keep their name and open nothing", "[proc_maps]")
{
    const std::vector<Mapping> maps = parse_maps("1000-2000 rw-p 00000000 00:00 0    [anon:my pool]\n");
    REQUIRE(maps.size() == 1);
    CHECK(maps[0].path == "[anon:my pool]");
    CHECK_FALSE(maps[0].deleted);
    CHECK(path_in_target(1, maps[0]) == "");
}

TEST_CASE("path_in_target opens files as the target sees them", "[proc_maps]")
{
    const std::vector<Mapping> maps = parse_maps(kMaps);
    REQUIRE(maps.size() == 9);
    CHECK(path_in_target(42, maps[0]) == "/proc/42/root/usr/bin/app");
    CHECK(path_in_target(42, maps[1]) == "/proc/42/map_files/7f12a0000000-7f12a0021000");
    CHECK(path_in_target(42, maps[2]) == "");
    CHECK(path_in_target(42, maps[4]) == "/proc/42/root/opt/my app/lib x.so");
    CHECK(path_in_target(4194304, maps[5]) == "/proc/4194304/map_files/7f12a1001000-7f12a1002000");
    CHECK(path_in_target(7, maps[6]) == "/proc/7/map_files/7f12a2000000-7f12a2001000");
    CHECK(path_in_target(42, maps[7]) == "");
    CHECK(path_in_target(42, maps[8]) == "");
}

TEST_CASE("find_mapping uses half-open ranges", "[proc_maps]")
{
    const std::vector<Mapping> maps = parse_maps(kMaps);
    REQUIRE(maps.size() == 9);
    CHECK(find_mapping(maps, 0x55d0c8a00000) == &maps[0]);
    CHECK(find_mapping(maps, 0x55d0c8a20fff) == &maps[0]);
    CHECK(find_mapping(maps, 0x55d0c8a21000) == nullptr);
    CHECK(find_mapping(maps, 0x7f12a0021000) == &maps[2]);
    CHECK(find_mapping(maps, 0xffffffffff600abc) == &maps[8]);
    CHECK(find_mapping(maps, 0) == nullptr);
    CHECK(find_mapping({}, 0x1000) == nullptr);
}

TEST_CASE("read_maps reads a live process", "[proc_maps]")
{
    const uint32_t pid = static_cast<uint32_t>(getpid());
    std::optional<std::vector<Mapping>> maps = read_maps(pid);
    REQUIRE(maps);

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    REQUIRE(n > 0);
    exe[n] = '\0';

    const Mapping* m = find_mapping(*maps, reinterpret_cast<uint64_t>(&code_in_this_binary));
    REQUIRE(m != nullptr);
    CHECK(m->path == exe);
    CHECK_FALSE(m->deleted);
    CHECK(m->perms == "r-xp");
    CHECK(path_in_target(pid, *m) == "/proc/" + std::to_string(pid) + "/root" + exe);
    CHECK(access(path_in_target(pid, *m).c_str(), R_OK) == 0);
}

TEST_CASE("read_maps of a process that does not exist", "[proc_maps]")
{
    // Above the kernel's PID_MAX_LIMIT (4194304), so never a live pid.
    CHECK_FALSE(read_maps(4194305));
}
