// Symbolizer (libdwfl) against real ELF files compiled here with `cc`:
// several link modes, stripped copies and every separate-debug-file layout.
// Expected offsets come from readelf, independently of libelf.
#include <dlfcn.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "proc_maps.h"
#include "symbolizer.h"

namespace fs = std::filesystem;
using connleak::Symbolizer;
using ElfOptions = connleak::SymbolizerOptions;

// Found by name in this test binary's own .symtab, demangled.
namespace connleak_test {
__attribute__((noinline)) int probe_marker(int x)
{
    return x * 3 + 1;
}
}  // namespace connleak_test

namespace {

// Two noinline functions (one static, so only in .symtab, one with
// aliases), a function
// without .size (covers up to the next symbol) and a one-byte function
// followed by padding that belongs to no function.
const char* const kProbeSource = R"(
volatile int sink;

__attribute__((noinline, noipa)) int busy_function(int n) {
    int acc = 0;
    for (int i = 0; i < n; i++) {
        acc += i * sink;
        sink = acc ^ i;
    }
    return acc + VARIANT;
}

/* Aliases at the same address; the public, global name must win. */
extern __typeof__(busy_function) __busy_alias __attribute__((alias("busy_function")));
extern __typeof__(busy_function) aaa_weak_alias __attribute__((weak, alias("busy_function")));

static __attribute__((noinline, noipa)) int local_helper(int n) {
    for (int i = 0; i < n; i++) sink += i * 3;
    return sink;
}

__asm__(".text\n"
        ".p2align 4\n"
        ".globl unsized_function\n"
        ".type unsized_function, @function\n"
        "unsized_function:\n"
        ".rept 16\n nop\n.endr\n"
        "ret\n"
        ".p2align 4\n"
        ".globl sized_after\n"
        ".type sized_after, @function\n"
        "sized_after:\n"
        "ret\n"
        ".size sized_after, .-sized_after\n"
        ".p2align 4\n");

int main(int argc, char** argv) {
    (void)argv;
    return busy_function(argc) + local_helper(argc);
}
)";

std::string hex(uint64_t v)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

void sh(const std::string& cmd)
{
    INFO(cmd);
    REQUIRE(std::system(cmd.c_str()) == 0);
}

std::string capture(const std::string& cmd)
{
    std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
    REQUIRE(p);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p.get())) > 0)
        out.append(buf, n);
    return out;
}

std::vector<std::string> words(const std::string& line)
{
    std::istringstream in(line);
    std::vector<std::string> w;
    for (std::string s; in >> s;)
        w.push_back(s);
    return w;
}

// --- ground truth from readelf ---

struct Load {
    uint64_t offset, vaddr, filesz;
};

std::vector<Load> loads_of(const std::string& path)
{
    std::vector<Load> loads;
    std::istringstream in(capture("readelf -lW '" + path + "'"));
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> w = words(line);
        if (w.size() >= 5 && w[0] == "LOAD")
            loads.push_back(
                {std::stoull(w[1], nullptr, 16), std::stoull(w[2], nullptr, 16), std::stoull(w[4], nullptr, 16)});
    }
    return loads;
}

// "  24: 0000000000401190    53 FUNC    GLOBAL DEFAULT   12 busy_function"
uint64_t symbol_value(const std::string& path, const std::string& name)
{
    std::istringstream in(capture("readelf -sW '" + path + "'"));
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> w = words(line);
        if (w.size() == 8 && w[3] == "FUNC" && w[7] == name)
            return std::stoull(w[1], nullptr, 16);
    }
    FAIL("no symbol " << name << " in " << path);
    return 0;
}

// Where `name` lies in the file: its address through the LOAD holding it.
// `symbols_from` is the unstripped original when `path` was stripped.
uint64_t file_offset_of(const std::string& path, const std::string& name, const std::string& symbols_from = "")
{
    uint64_t vaddr = symbol_value(symbols_from.empty() ? path : symbols_from, name);
    for (const Load& l : loads_of(path))
        if (vaddr >= l.vaddr && vaddr < l.vaddr + l.filesz)
            return vaddr - l.vaddr + l.offset;
    FAIL("no LOAD segment holds " << name << " in " << path);
    return 0;
}

std::string build_id_of(const std::string& path)
{
    std::istringstream in(capture("readelf -n '" + path + "'"));
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> w = words(line);
        if (w.size() == 3 && w[0] == "Build" && w[1] == "ID:")
            return w[2];
    }
    return "";
}

// --- the compiled files, built once for the whole run ---

struct Elves {
    std::string dir;
    std::string nopie, pie, pie_shifted, shared;  // unstripped, with .symtab
    std::string shared_stripped;                  // .dynsym only
    std::string with_id;                          // PIE with build id, unstripped original of:
    std::string stripped;                         // no debug file anywhere near
    std::string empty_root, buildid_root, beside, dotdebug, rooted, rooted_root, mismatch;  // debug layouts
    std::string no_id, no_id_beside, no_id_bad;  // without build id: CRC decides

    Elves()
    {
        char tmpl[] = "/tmp/connleak-elf-XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        dir = tmpl;
        std::ofstream(dir + "/probe.c") << kProbeSource;
        const std::string cc = "cd '" + dir + "' && cc -DVARIANT=0 probe.c ";

        nopie = dir + "/nopie";
        sh(cc + "-O2 -fomit-frame-pointer -fno-pie -no-pie -o nopie");
        pie = dir + "/pie";
        sh(cc + "-O1 -fPIE -pie -o pie");
        // Links at 0x10000, so file offsets and addresses differ in a PIE too.
        pie_shifted = dir + "/pie_shifted";
        sh(cc + "-O0 -fPIE -pie -Wl,-Ttext-segment=0x10000 -o pie_shifted");
        shared = dir + "/libprobe.so";
        sh(cc + "-O2 -fPIC -shared -o libprobe.so");
        shared_stripped = dir + "/libprobe_stripped.so";
        sh("cp '" + shared + "' '" + shared_stripped + "' && strip '" + shared_stripped + "'");

        with_id = dir + "/with_id";
        sh(cc + "-O2 -fPIE -pie -Wl,--build-id=sha1 -o with_id");
        make_stripped_layouts();
        make_no_build_id_layouts();
    }

    ~Elves()
    {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }

    // A stripped copy named `prog` with a debuglink to prog.debug, in work/.
    void split_debug(const std::string& work, const std::string& original)
    {
        sh("mkdir -p '" + work + "' && cd '" + work + "' && cp '" + original +
           "' prog && objcopy --only-keep-debug prog prog.debug && strip prog && "
           "objcopy --add-gnu-debuglink=prog.debug prog");
    }

    void place(const std::string& file, const std::string& to) const
    {
        sh("mkdir -p \"$(dirname '" + to + "')\" && cp '" + file + "' '" + to + "'");
    }

    void make_stripped_layouts()
    {
        const std::string work = dir + "/work";
        split_debug(work, with_id);
        const std::string id = build_id_of(with_id);
        REQUIRE(id.size() == 40);

        empty_root = dir + "/empty-root";
        sh("mkdir -p '" + empty_root + "'");
        stripped = dir + "/stripped/prog";
        place(work + "/prog", stripped);

        buildid_root = dir + "/buildid-root";
        place(work + "/prog.debug", buildid_root + "/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug");

        beside = dir + "/beside/prog";
        place(work + "/prog", beside);
        place(work + "/prog.debug", dir + "/beside/prog.debug");

        dotdebug = dir + "/dotdebug/prog";
        place(work + "/prog", dotdebug);
        place(work + "/prog.debug", dir + "/dotdebug/.debug/prog.debug");

        rooted = dir + "/rooted/prog";
        rooted_root = dir + "/rooted-root";
        place(work + "/prog", rooted);
        place(work + "/prog.debug", rooted_root + dir + "/rooted/prog.debug");

        // The debug file of another build, under the expected name.
        const std::string other = dir + "/other";
        sh("cd '" + dir + "' && cc -DVARIANT=1 probe.c -O2 -fPIE -pie -Wl,--build-id=sha1 -o other");
        split_debug(dir + "/work-other", other);
        mismatch = dir + "/mismatch/prog";
        place(work + "/prog", mismatch);
        place(dir + "/work-other/prog.debug", dir + "/mismatch/prog.debug");
    }

    void make_no_build_id_layouts()
    {
        sh("cd '" + dir + "' && cc -DVARIANT=0 probe.c -O2 -fPIE -pie -Wl,--build-id=none -o no_id");
        sh("cd '" + dir + "' && cc -DVARIANT=1 probe.c -O2 -fPIE -pie -Wl,--build-id=none -o no_id_other");
        no_id = dir + "/no_id";
        REQUIRE(build_id_of(no_id).empty());
        split_debug(dir + "/work-no-id", no_id);
        split_debug(dir + "/work-no-id-other", dir + "/no_id_other");

        no_id_beside = dir + "/no-id-beside/prog";
        place(dir + "/work-no-id/prog", no_id_beside);
        place(dir + "/work-no-id/prog.debug", dir + "/no-id-beside/prog.debug");

        no_id_bad = dir + "/no-id-bad/prog";
        place(dir + "/work-no-id/prog", no_id_bad);
        place(dir + "/work-no-id-other/prog.debug", dir + "/no-id-bad/prog.debug");
    }
};

const Elves& elves()
{
    static Elves e;
    return e;
}

ElfOptions debug_root(const std::string& root)
{
    ElfOptions o;
    o.debug_root = root;
    return o;
}

std::string module_of(const std::string& path)
{
    return fs::path(path).filename().string();
}

// The same checks on every build that still has its .symtab.
void check_full_symbols(const std::string& path)
{
    INFO("file " << path);
    const std::string mod = module_of(path);
    Symbolizer s(debug_root(elves().empty_root));

    const uint64_t busy = file_offset_of(path, "busy_function");
    CHECK(s.name(path, mod, busy + 0x10) == "busy_function+0x10 (" + mod + ")");
    CHECK(s.name(path, mod, busy) == "busy_function+0x0 (" + mod + ")");

    const uint64_t local = file_offset_of(path, "local_helper");
    CHECK(s.name(path, mod, local + 0x10) == "local_helper+0x10 (" + mod + ")");

    // 16 nops and a ret, padded to 0x20 before sized_after.
    const uint64_t unsized = file_offset_of(path, "unsized_function");
    const uint64_t after = file_offset_of(path, "sized_after");
    REQUIRE(after - unsized == 0x20);
    CHECK(s.name(path, mod, unsized + 0x4) == "unsized_function+0x4 (" + mod + ")");
    CHECK(s.name(path, mod, unsized + 0x1f) == "unsized_function+0x1f (" + mod + ")");
    CHECK(s.name(path, mod, after) == "sized_after+0x0 (" + mod + ")");

    // sized_after is one byte long; the next byte is alignment padding.
    CHECK(s.name(path, mod, after + 1) == mod + "+" + hex(after + 1));
    CHECK(s.name(path, mod, 0) == mod + "+0x0");
    CHECK(s.name(path, mod, 0x40) == mod + "+0x40");
    CHECK(s.name(path, mod, 0x10000000) == mod + "+0x10000000");
    CHECK(s.cached_files() == 1);
}

}  // namespace

TEST_CASE("functions resolve by file offset in every kind of build", "[symbolizer]")
{
    SECTION("-O2 -fomit-frame-pointer, not PIE")
    {
        check_full_symbols(elves().nopie);
    }
    SECTION("PIE")
    {
        check_full_symbols(elves().pie);
    }
    SECTION("PIE linked at 0x10000")
    {
        check_full_symbols(elves().pie_shifted);
    }
    SECTION("shared library")
    {
        check_full_symbols(elves().shared);
    }
    SECTION("PIE with a build id")
    {
        check_full_symbols(elves().with_id);
    }
}

TEST_CASE("functions' file offsets come through PT_LOAD", "[symbolizer]")
{
    const Elves& e = elves();
    Symbolizer s(debug_root(e.empty_root));
    for (const std::string& path : {e.nopie, e.pie_shifted, e.shared}) {
        INFO("file " << path);
        CHECK(s.function_offset(path, "busy_function") == file_offset_of(path, "busy_function"));
        CHECK(s.function_offset(path, "local_helper") == file_offset_of(path, "local_helper"));
        CHECK_FALSE(s.function_offset(path, "no_such_function"));
        CHECK(s.debug_file(path) == "");
    }
    // Not PIE: linked at 0x400000.
    CHECK(file_offset_of(e.nopie, "busy_function") + 0x400000 == symbol_value(e.nopie, "busy_function"));
    // Exports of a stripped library, from .dynsym.
    CHECK(s.function_offset(e.shared_stripped, "busy_function") == file_offset_of(e.shared, "busy_function"));
}

TEST_CASE("one file offset of one file, uncached", "[symbolizer]")
{
    const Elves& e = elves();
    const uint64_t local = file_offset_of(e.with_id, "local_helper");
    auto f = connleak::symbolize_file_offset(e.with_id, local + 3, debug_root(e.empty_root));
    REQUIRE(f);
    CHECK(f->function == "local_helper");
    CHECK(f->function_offset == 3);
    CHECK(f->module == "with_id");
    CHECK(f->file_offset == local + 3);
    CHECK(f->build_id == build_id_of(e.with_id));
    CHECK(f->source == "");  // built without -g

    auto stripped = connleak::symbolize_file_offset(e.stripped, local + 3, debug_root(e.buildid_root));
    REQUIRE(stripped);
    CHECK(stripped->build_id == build_id_of(e.with_id));
    CHECK(connleak::format_frame(stripped.value()) == "local_helper+0x3 (prog)");

    auto no_id = connleak::symbolize_file_offset(e.no_id_beside, 0, debug_root(e.empty_root));
    REQUIRE(no_id);
    CHECK(no_id->build_id == "");
    CHECK(connleak::format_frame(no_id.value()) == "prog+0x0");
}

TEST_CASE("stripped binaries resolve through separate debug files", "[symbolizer]")
{
    const Elves& e = elves();
    // Offsets from the stripped file's own segments, names from the original.
    const uint64_t busy = file_offset_of(e.stripped, "busy_function", e.with_id);
    const uint64_t local = file_offset_of(e.stripped, "local_helper", e.with_id);
    REQUIRE(busy == file_offset_of(e.with_id, "busy_function"));

    auto expect_resolved = [&](const std::string& path, const std::string& root, const std::string& debug_file) {
        INFO("file " << path << ", debug root " << root);
        Symbolizer s(debug_root(root));
        CHECK(s.name(path, "prog", busy + 0x10) == "busy_function+0x10 (prog)");
        CHECK(s.name(path, "prog", local + 0x8) == "local_helper+0x8 (prog)");
        CHECK(s.debug_file(path) == debug_file);
    };
    auto expect_unresolved = [&](const std::string& path, const std::string& root) {
        INFO("file " << path << ", debug root " << root);
        Symbolizer s(debug_root(root));
        CHECK(s.name(path, "prog", busy + 0x10) == "prog+" + hex(busy + 0x10));
        CHECK(s.name(path, "prog", local + 0x8) == "prog+" + hex(local + 0x8));
        CHECK(s.debug_file(path) == "");
    };

    SECTION("no debug file anywhere")
    {
        expect_unresolved(e.stripped, e.empty_root);
    }
    SECTION("ROOT/.build-id/xx/yyyy.debug")
    {
        const std::string id = build_id_of(e.with_id);
        expect_resolved(e.stripped, e.buildid_root,
                        e.buildid_root + "/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug");
    }
    SECTION("debuglink beside the file")
    {
        expect_resolved(e.beside, e.empty_root, e.dir + "/beside/prog.debug");
    }
    SECTION("debuglink in .debug/ beside the file")
    {
        expect_resolved(e.dotdebug, e.empty_root, e.dir + "/dotdebug/.debug/prog.debug");
    }
    SECTION("debuglink under ROOT/DIR")
    {
        expect_resolved(e.rooted, e.rooted_root, e.rooted_root + e.dir + "/rooted/prog.debug");
    }
    SECTION("a debug file with another build id is ignored")
    {
        expect_unresolved(e.mismatch, e.empty_root);
    }
    SECTION("debug files can be turned off")
    {
        ElfOptions off = debug_root(e.buildid_root);
        off.use_debug_files = false;
        Symbolizer s(off);
        CHECK(s.name(e.stripped, "prog", busy + 0x10) == "prog+" + hex(busy + 0x10));
    }
}

TEST_CASE("without build ids the debuglink CRC decides", "[symbolizer]")
{
    const Elves& e = elves();
    const uint64_t busy = file_offset_of(e.no_id_beside, "busy_function", e.no_id);
    Symbolizer s(debug_root(e.empty_root));
    CHECK(s.name(e.no_id_beside, "prog", busy + 0x10) == "busy_function+0x10 (prog)");
    CHECK(s.name(e.no_id_bad, "prog", busy + 0x10) == "prog+" + hex(busy + 0x10));
}

TEST_CASE("a stripped shared library still names its exports from .dynsym", "[symbolizer]")
{
    const Elves& e = elves();
    const std::string& so = e.shared_stripped;
    const uint64_t busy = file_offset_of(so, "busy_function", e.shared);
    const uint64_t unsized = file_offset_of(so, "unsized_function", e.shared);
    const uint64_t local = file_offset_of(so, "local_helper", e.shared);
    Symbolizer s(debug_root(e.empty_root));
    CHECK(s.name(so, "libprobe_stripped.so", busy + 0x10) == "busy_function+0x10 (libprobe_stripped.so)");
    CHECK(s.name(so, "libprobe_stripped.so", unsized + 0x4) == "unsized_function+0x4 (libprobe_stripped.so)");
    CHECK(s.name(so, "libprobe_stripped.so", local + 0x10) == "libprobe_stripped.so+" + hex(local + 0x10));
}

TEST_CASE("unusable paths fall back to module+offset", "[symbolizer]")
{
    const Elves& e = elves();
    const std::string text_file = e.dir + "/not-elf.txt";
    std::ofstream(text_file) << "just text\n";
    Symbolizer s(debug_root(e.empty_root));

    CHECK(s.name("", "app", 0x1234) == "app+0x1234");
    CHECK(s.name(e.dir + "/missing", "app", 0x1234) == "app+0x1234");
    CHECK(s.name(text_file, "app", 0xabc) == "app+0xabc");
    CHECK(s.name(e.dir, "app", 0x1) == "app+0x1");  // a directory
    // No module given: the file's own name stands in.
    CHECK(s.name(e.pie, "", file_offset_of(e.pie, "busy_function") + 2) == "busy_function+0x2 (pie)");

    auto missing = connleak::symbolize_file_offset(e.dir + "/missing", 0);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message == e.dir + "/missing: No such file or directory");
    auto text = connleak::symbolize_file_offset(text_file, 0);
    REQUIRE_FALSE(text);
    CHECK(text.error().message == text_file + ": not an ELF file");
}

TEST_CASE("the cache is per file, not per path", "[symbolizer]")
{
    const Elves& e = elves();
    const std::string link = e.dir + "/pie-hardlink";
    const std::string replaced = e.dir + "/replaced";
    fs::remove(link);
    sh("ln '" + e.pie + "' '" + link + "' && cp '" + e.nopie + "' '" + replaced + "'");
    Symbolizer s(debug_root(e.empty_root));

    const uint64_t pie_busy = file_offset_of(e.pie, "busy_function");
    CHECK(s.name(e.pie, "pie", pie_busy) == "busy_function+0x0 (pie)");
    CHECK(s.name(link, "pie", pie_busy) == "busy_function+0x0 (pie)");
    CHECK(s.name("/proc/self/root" + e.pie, "pie", pie_busy) == "busy_function+0x0 (pie)");
    CHECK(s.cached_files() == 1);

    CHECK(s.name(e.dir + "/missing", "x", 1) == "x+0x1");
    CHECK(s.cached_files() == 1);  // nothing to key a missing file by

    // A file replaced by rename is a new inode, so it is read again.
    const uint64_t nopie_local = file_offset_of(e.nopie, "local_helper");
    CHECK(s.name(replaced, "replaced", nopie_local + 1) == "local_helper+0x1 (replaced)");
    sh("cp '" + e.pie_shifted + "' '" + replaced + ".new' && mv '" + replaced + ".new' '" + replaced + "'");
    const uint64_t shifted_local = file_offset_of(e.pie_shifted, "local_helper");
    CHECK(s.name(replaced, "replaced", shifted_local + 1) == "local_helper+0x1 (replaced)");
    CHECK(s.cached_files() == 3);
}

TEST_CASE("C++ names are demangled", "[symbolizer]")
{
    CHECK(connleak::demangle("_ZN2ns1fEi") == "ns::f(int)");
    CHECK(connleak::demangle("busy_function") == "busy_function");
    CHECK(connleak::demangle("_Znot_a_name") == "_Znot_a_name");

    // This test binary, found through its own maps like a traced process.
    const uint32_t pid = static_cast<uint32_t>(getpid());
    auto maps = connleak::read_maps(pid);
    REQUIRE(maps);
    const uint64_t addr = reinterpret_cast<uint64_t>(&connleak_test::probe_marker);
    const connleak::Mapping* m = connleak::find_mapping(*maps, addr);
    REQUIRE(m != nullptr);
    Symbolizer s(debug_root(elves().empty_root));
    CHECK(s.name(connleak::path_in_target(pid, *m), "unit_tests", addr - m->start + m->offset + 1) ==
          "connleak_test::probe_marker(int)+0x1 (unit_tests)");
}

TEST_CASE("a deleted library resolves through map_files", "[symbolizer][proc_maps]")
{
    const Elves& e = elves();
    const std::string copy = e.dir + "/libdeleted.so";
    sh("cp '" + e.shared + "' '" + copy + "'");
    void* handle = dlopen(copy.c_str(), RTLD_NOW | RTLD_LOCAL);
    REQUIRE(handle);
    std::unique_ptr<void, int (*)(void*)> closer(handle, dlclose);
    void* sym = dlsym(handle, "busy_function");
    REQUIRE(sym);
    REQUIRE(unlink(copy.c_str()) == 0);

    const uint32_t pid = static_cast<uint32_t>(getpid());
    auto maps = connleak::read_maps(pid);
    REQUIRE(maps);
    const uint64_t addr = reinterpret_cast<uint64_t>(sym);
    const connleak::Mapping* m = connleak::find_mapping(*maps, addr);
    REQUIRE(m != nullptr);
    CHECK(m->path == copy);
    CHECK(m->deleted);

    char range[64];
    std::snprintf(range, sizeof range, "%" PRIx64 "-%" PRIx64, m->start, m->end);
    const std::string path = connleak::path_in_target(pid, *m);
    CHECK(path == "/proc/" + std::to_string(pid) + "/map_files/" + range);
    // map_files needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE), as connleak has.
    if (geteuid() != 0 && access(path.c_str(), R_OK) != 0) {
        WARN("not root: skipping the symbolization through " << path);
        return;
    }
    Symbolizer s(debug_root(e.empty_root));
    CHECK(s.name(path, "libdeleted.so", addr - m->start + m->offset + 0x10) == "busy_function+0x10 (libdeleted.so)");
}

TEST_CASE("a stripped library names versioned functions as .dynsym does", "[symbolizer]")
{
    // glibc's debug .symtab spells versioned functions "name@@VERSION"
    // (__libc_start_main@@GLIBC_2.34); its .dynsym has the plain name, which
    // is what people read and what the runtime-entry rule knows.
    const Elves& e = elves();
    const std::string dir = e.dir + "/versioned";
    sh("mkdir -p '" + dir + "' && cd '" + dir +
       "' && printf 'V2 { global: busy; local: *; };\\n' > v.map && "
       "printf 'volatile int s;\\nint busy_v2(int n) { for (int i = 0; i < n; i++) s += i * s; return s; }\\n"
       "__asm__(\".symver busy_v2, busy@@V2\");\\n' > v.c && "
       "cc -O2 -fPIC -shared -Wl,--build-id=sha1 -Wl,--version-script=v.map -o libver.so v.c");
    const std::string lib = dir + "/libver.so";
    REQUIRE(capture("readelf -sW '" + lib + "'").find("busy@@V2") != std::string::npos);
    const uint64_t busy = file_offset_of(lib, "busy_v2");
    const std::string id = build_id_of(lib);
    const std::string root = dir + "/debug";
    sh("mkdir -p '" + root + "/.build-id/" + id.substr(0, 2) + "' && cp '" + lib + "' '" + root + "/.build-id/" +
       id.substr(0, 2) + "/" + id.substr(2) + ".debug'");
    sh("strip '" + lib + "'");

    Symbolizer s(debug_root(root));
    CHECK(s.name(lib, "libver.so", busy + 0x4) == "busy+0x4 (libver.so)");
    CHECK(s.debug_file(lib) == root + "/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug");
}

TEST_CASE("debug files are searched locally, never through debuginfod", "[symbolizer]")
{
    // A file with a build id and no debug file anywhere is where libdwfl's
    // standard search would end in debuginfod (dlopen of libdebuginfod, and
    // with DEBUGINFOD_URLS set, the network). In a child, so that nothing
    // else this test binary did has loaded it already.
    const Elves& e = elves();
    const uint64_t busy = file_offset_of(e.stripped, "busy_function", e.with_id);
    std::fflush(nullptr);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        setenv("DEBUGINFOD_URLS", "http://127.0.0.1:9", 1);  // discard port: nothing answers
        Symbolizer s(debug_root(e.empty_root));
        const bool unnamed = s.name(e.stripped, "prog", busy) == "prog+" + hex(busy);
        std::ifstream maps("/proc/self/maps");
        std::stringstream text;
        text << maps.rdbuf();
        const bool loaded = text.str().find("libdebuginfod") != std::string::npos;
        _exit(!unnamed ? 2 : loaded ? 1 : 0);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) != 2);  // the stripped file stays unnamed
    CHECK(WEXITSTATUS(status) == 0);  // 1: libdebuginfod was loaded
}

TEST_CASE("a debuglink under the debug root inside a container's root", "[symbolizer]")
{
    // A process chrooted to CONTAINER runs CONTAINER/app/prog, whose debug
    // file is CONTAINER/usr/lib/debug/app/prog.debug: seen from here,
    // /proc/PID/root/app/prog and /proc/PID/root/usr/lib/debug/app/prog.debug.
    if (geteuid() != 0) {
        WARN("not root: no chroot, skipping");
        return;
    }
    const Elves& e = elves();
    const std::string container = e.dir + "/container";
    e.place(e.dir + "/work/prog", container + "/app/prog");
    e.place(e.dir + "/work/prog.debug", container + "/usr/lib/debug/app/prog.debug");
    const uint64_t busy = file_offset_of(e.stripped, "busy_function", e.with_id);

    std::fflush(nullptr);
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        if (chroot(container.c_str()) != 0)
            _exit(1);
        for (;;)
            pause();
    }
    const std::string root = "/proc/" + std::to_string(child) + "/root";
    for (int i = 0; i < 500 && fs::read_symlink(root) != container; i++)
        usleep(1000);
    const bool chrooted = fs::read_symlink(root) == container;
    Symbolizer s;  // the default debug root, /usr/lib/debug
    const std::string name = s.name(root + "/app/prog", "prog", busy + 0x10);
    const std::string debug_file = s.debug_file(root + "/app/prog");
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    REQUIRE(chrooted);
    CHECK(name == "busy_function+0x10 (prog)");
    CHECK(debug_file == root + "/usr/lib/debug/app/prog.debug");
}
