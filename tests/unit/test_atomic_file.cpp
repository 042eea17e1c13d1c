// write_file_atomically and check_writable, in a fresh directory per test.
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "atomic_file.h"

using connleak::check_writable;
using connleak::PieceWriter;
using connleak::write_file_atomically;

namespace {

// A directory under /tmp, removed with what the test left in it.
class TempDir {
public:
    TempDir()
    {
        char tmpl[] = "/tmp/connleak-atomic-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() { remove_tree(path_); }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

    // Names in the directory, sorted.
    std::vector<std::string> entries() const { return list(path_); }

    static std::vector<std::string> list(const std::string& dir)
    {
        std::vector<std::string> out;
        if (DIR* d = opendir(dir.c_str())) {
            while (dirent* e = readdir(d)) {
                std::string name = e->d_name;
                if (name != "." && name != "..")
                    out.push_back(name);
            }
            closedir(d);
        }
        std::sort(out.begin(), out.end());
        return out;
    }

private:
    static void remove_tree(const std::string& p)
    {
        struct stat st;
        if (lstat(p.c_str(), &st) != 0)
            return;
        if (S_ISDIR(st.st_mode)) {
            for (const std::string& name : list(p))
                remove_tree(p + "/" + name);
            rmdir(p.c_str());
        } else {
            unlink(p.c_str());
        }
    }

    std::string path_;
};

std::string read_all(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_plain(const std::string& path, const std::string& content)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

bool is_directory(const std::string& path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool contains(const std::string& text, const std::string& part)
{
    return text.find(part) != std::string::npos;
}

// Sets the umask for one scope.
class ScopedUmask {
public:
    explicit ScopedUmask(mode_t mask) : old_(umask(mask)) {}
    ~ScopedUmask() { umask(old_); }
    ScopedUmask(const ScopedUmask&) = delete;
    ScopedUmask& operator=(const ScopedUmask&) = delete;

private:
    mode_t old_;
};

mode_t mode_of(const std::string& path)
{
    struct stat st;
    REQUIRE(lstat(path.c_str(), &st) == 0);
    return st.st_mode;
}

}  // namespace

TEST_CASE("write_file_atomically writes what is read back", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "snap.json";
    const std::string content = std::string("{\"version\": 1}\n") + std::string(1, '\0') + "\xff tail\n";
    ScopedUmask mask(022);
    CHECK(write_file_atomically(path, content) == "");
    CHECK(read_all(path) == content);
    CHECK(dir.entries() == std::vector<std::string>{"snap.json"});

    // Readable by dashboards, not left 0600 by mkstemp.
    CHECK((mode_of(path) & 0777) == 0644);
}

TEST_CASE("write_file_atomically honours the umask", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "snap.json";
    SECTION("umask 077: private")
    {
        ScopedUmask mask(077);
        CHECK(write_file_atomically(path, "x\n") == "");
        CHECK((mode_of(path) & 0777) == 0600);
    }
    SECTION("umask 0: everyone may write")
    {
        ScopedUmask mask(0);
        CHECK(write_file_atomically(path, "x\n") == "");
        CHECK((mode_of(path) & 0777) == 0666);
    }
    SECTION("umask 027, over an existing 0644 file")
    {
        write_plain(path, "old\n");
        REQUIRE(chmod(path.c_str(), 0644) == 0);
        ScopedUmask mask(027);
        CHECK(write_file_atomically(path, "x\n") == "");
        CHECK((mode_of(path) & 0777) == 0640);
    }
    CHECK(dir.entries() == std::vector<std::string>{"snap.json"});
}

TEST_CASE("write_file_atomically works for a name as long as NAME_MAX", "[atomic_file]")
{
    TempDir dir;
    for (size_t len : std::vector<size_t>{NAME_MAX - 11, NAME_MAX - 10, NAME_MAX - 1, NAME_MAX}) {
        const std::string name(len, 'n');
        INFO("name of " << len << " bytes");
        CHECK(check_writable(dir / name) == "");
        CHECK(write_file_atomically(dir / name, "first\n") == "");
        CHECK(write_file_atomically(dir / name, "second\n") == "");
        CHECK(read_all(dir / name) == "second\n");
        CHECK(dir.entries() == std::vector<std::string>{name});
        unlink((dir / name).c_str());
    }
    // One byte more is the file system's refusal, said as such.
    const std::string too_long(NAME_MAX + 1, 'n');
    CHECK(contains(check_writable(dir / too_long), "File name too long"));
    CHECK(contains(write_file_atomically(dir / too_long, "x"), "File name too long"));
    CHECK(dir.entries().empty());
}

// What is not a regular file is never replaced: a snapshot written over
// /dev/null once made it a regular file for the whole machine.
TEST_CASE("write_file_atomically and check_writable refuse what is not a regular file", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "target";
    const std::string name = "target";
    SECTION("a FIFO")
    {
        REQUIRE(mkfifo(path.c_str(), 0644) == 0);
        CHECK(contains(check_writable(path), "not a regular file"));
        CHECK(contains(write_file_atomically(path, "x"), "not a regular file"));
        CHECK(S_ISFIFO(mode_of(path)));
        CHECK(dir.entries() == std::vector<std::string>{name});
    }
    SECTION("a character device like /dev/null (1,3)")
    {
        if (mknod(path.c_str(), S_IFCHR | 0666, makedev(1, 3)) != 0) {
            WARN("mknod needs CAP_MKNOD: skipped");
            return;
        }
        CHECK(contains(check_writable(path), "not a regular file"));
        CHECK(contains(write_file_atomically(path, "x"), "not a regular file"));
        struct stat st;
        REQUIRE(lstat(path.c_str(), &st) == 0);
        CHECK(S_ISCHR(st.st_mode));
        CHECK(st.st_rdev == makedev(1, 3));
        CHECK(dir.entries() == std::vector<std::string>{name});
    }
    SECTION("a symbolic link to a regular file: refused, link and file untouched")
    {
        write_plain(dir / "real.json", "keep\n");
        REQUIRE(symlink("real.json", path.c_str()) == 0);
        CHECK(contains(check_writable(path), "symbolic link"));
        CHECK(contains(write_file_atomically(path, "x"), "symbolic link"));
        CHECK(S_ISLNK(mode_of(path)));
        CHECK(read_all(dir / "real.json") == "keep\n");
        CHECK(dir.entries() == std::vector<std::string>{"real.json", name});
    }
    SECTION("a dangling symbolic link: refused, nothing created")
    {
        REQUIRE(symlink("nowhere.json", path.c_str()) == 0);
        CHECK(contains(check_writable(path), "symbolic link"));
        CHECK(contains(write_file_atomically(path, "x"), "symbolic link"));
        CHECK(S_ISLNK(mode_of(path)));
        CHECK(dir.entries() == std::vector<std::string>{name});
    }
}

TEST_CASE("write_file_atomically writes an empty file", "[atomic_file]")
{
    TempDir dir;
    CHECK(write_file_atomically(dir / "empty", "") == "");
    CHECK(read_all(dir / "empty").empty());
    CHECK(dir.entries() == std::vector<std::string>{"empty"});
}

TEST_CASE("write_file_atomically writes a large file whole", "[atomic_file]")
{
    TempDir dir;
    std::string big(5 * 1024 * 1024 + 17, 'x');
    for (size_t i = 0; i < big.size(); i += 4096)
        big[i] = static_cast<char>('a' + (i / 4096) % 26);
    CHECK(write_file_atomically(dir / "big", big) == "");
    CHECK(read_all(dir / "big") == big);
}

TEST_CASE("write_file_atomically replaces an existing file", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "snap.json";
    write_plain(path, "an old and much longer content that must not survive in part\n");
    CHECK(write_file_atomically(path, "new\n") == "");
    CHECK(read_all(path) == "new\n");
    CHECK(write_file_atomically(path, "newer\n") == "");
    CHECK(read_all(path) == "newer\n");
    CHECK(dir.entries() == std::vector<std::string>{"snap.json"});
}

TEST_CASE("write_file_atomically replaces, so an open reader keeps the old content", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "snap.json";
    write_plain(path, "old\n");
    std::ifstream reader(path, std::ios::binary);
    REQUIRE(reader.good());
    CHECK(write_file_atomically(path, "new content\n") == "");
    std::ostringstream seen;
    seen << reader.rdbuf();
    CHECK(seen.str() == "old\n");
    CHECK(read_all(path) == "new content\n");
}

TEST_CASE("write_file_atomically into a missing directory fails, naming the path", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "missing/snap.json";
    std::string err = write_file_atomically(path, "x");
    CHECK_FALSE(err.empty());
    CHECK(contains(err, path));
    CHECK(contains(err, "No such file or directory"));
    CHECK(dir.entries().empty());  // no temporary, no directory made
}

TEST_CASE("write_file_atomically over a directory fails and leaves no temporary", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "out";
    REQUIRE(mkdir(path.c_str(), 0755) == 0);
    std::string err = write_file_atomically(path, "x");
    CHECK_FALSE(err.empty());
    CHECK(contains(err, path));
    CHECK(dir.entries() == std::vector<std::string>{"out"});
    CHECK(is_directory(path));
    CHECK(TempDir::list(path).empty());
}

TEST_CASE("check_writable accepts a path in an existing directory and leaves nothing", "[atomic_file]")
{
    TempDir dir;
    SECTION("a new file")
    {
        CHECK(check_writable(dir / "snap.json") == "");
        CHECK(dir.entries().empty());
    }
    SECTION("an existing file, left as it was")
    {
        write_plain(dir / "snap.json", "keep\n");
        CHECK(check_writable(dir / "snap.json") == "");
        CHECK(dir.entries() == std::vector<std::string>{"snap.json"});
        CHECK(read_all(dir / "snap.json") == "keep\n");
    }
}

TEST_CASE("check_writable rejects a missing directory, naming the path", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "missing/snap.json";
    std::string err = check_writable(path);
    CHECK_FALSE(err.empty());
    CHECK(contains(err, path));
    CHECK(dir.entries().empty());
}

// (A bug in the version first tested: check_writable only tried to create
// "<path>.tmp.XXXXXX" beside the path, which succeeds for a directory, so the
// first real write failed at rename() with EISDIR after tracing had started.
// Fixed in f2fa99b; kept as a regression test.)
TEST_CASE("check_writable rejects a path that is a directory", "[atomic_file]")
{
    TempDir dir;
    SECTION("a subdirectory")
    {
        const std::string path = dir / "out";
        REQUIRE(mkdir(path.c_str(), 0755) == 0);
        std::string err = check_writable(path);
        CHECK_FALSE(err.empty());
        CHECK(contains(err, path));
        CHECK(dir.entries() == std::vector<std::string>{"out"});
        CHECK(TempDir::list(path).empty());
        // What an empty answer promises: the real write succeeds.
        if (err.empty())
            CHECK(write_file_atomically(path, "x") == "");
    }
    SECTION("a directory named with a trailing slash")
    {
        const std::string path = dir.path() + "/";
        std::string err = check_writable(path);
        CHECK_FALSE(err.empty());
        CHECK(contains(err, path));
        CHECK(dir.entries().empty());
        if (err.empty())
            CHECK(write_file_atomically(path, "x") == "");
    }
}

TEST_CASE("write_file_atomically in pieces: the pieces in order, the old file until the end", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "snap.json";
    REQUIRE(write_file_atomically(path, "old\n") == "");
    std::string expected;
    CHECK(write_file_atomically(path, [&](const PieceWriter& put) {
              for (int i = 0; i < 50; i++) {
                  const std::string piece(1000 + i * 997, static_cast<char>('a' + i % 26));
                  put(piece);
                  expected += piece;
                  // Not replaced while being written.
                  if (i == 25)
                      CHECK(read_all(path) == "old\n");
              }
              put("");
          }) == "");
    CHECK(read_all(path) == expected);
    CHECK(dir.entries() == std::vector<std::string>{"snap.json"});
}

TEST_CASE("write_file_atomically in pieces: a failed write leaves the old file and no temporary", "[atomic_file]")
{
    // A file system full after a few pieces: a tmpfs cannot be mounted here,
    // so the write fails by a file size limit instead (SIGXFSZ ignored: EFBIG).
    TempDir dir;
    const std::string path = dir / "snap.json";
    REQUIRE(write_file_atomically(path, "old\n") == "");
    struct rlimit old_limit;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    auto old_handler = signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = old_limit;
    small.rlim_cur = 64 * 1024;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    size_t pieces = 0;
    const std::string err = write_file_atomically(path, [&](const PieceWriter& put) {
        for (int i = 0; i < 20; i++) {
            put(std::string(16 * 1024, 'x'));
            pieces++;
        }
    });
    setrlimit(RLIMIT_FSIZE, &old_limit);
    signal(SIGXFSZ, old_handler);
    CHECK(pieces == 20);  // produced to the end; nothing more written after the failure
    CHECK(err.find("cannot write") != std::string::npos);
    CHECK(read_all(path) == "old\n");
    CHECK(dir.entries() == std::vector<std::string>{"snap.json"});
}
