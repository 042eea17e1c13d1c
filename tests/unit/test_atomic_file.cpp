// write_file_atomically and check_writable, in a fresh directory per test.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "atomic_file.h"

using connleak::check_writable;
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

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("write_file_atomically writes what is read back", "[atomic_file]")
{
    TempDir dir;
    const std::string path = dir / "snap.json";
    const std::string content = std::string("{\"version\": 1}\n") + std::string(1, '\0') + "\xff tail\n";
    CHECK(write_file_atomically(path, content) == "");
    CHECK(read_all(path) == content);
    CHECK(dir.entries() == std::vector<std::string>{"snap.json"});

    // Readable by dashboards, not left 0600 by mkstemp.
    struct stat st;
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0644);
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
