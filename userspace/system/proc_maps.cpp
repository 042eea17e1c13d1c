// /proc/PID/maps parsing. The format (fs/proc/task_mmu.c, show_map_vma):
//   START-END PERMS OFFSET MAJOR:MINOR INODE [PADDING PATH]
// with hex START, END, OFFSET, MAJOR and MINOR, decimal INODE, and PATH
// taking the rest of the line, so it may hold spaces.
#include "proc_maps.h"

#include <charconv>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string_view>
#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace connleak {
namespace {

constexpr std::string_view kDeletedSuffix = " (deleted)";

// A cursor over one line; each take_* consumes a field or fails.
struct LineReader {
    std::string_view rest;

    void skip_spaces()
    {
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t'))
            rest.remove_prefix(1);
    }

    bool take_number(uint64_t& out, int base)
    {
        auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), out, base);
        if (ec != std::errc() || end == rest.data())
            return false;
        rest.remove_prefix(static_cast<size_t>(end - rest.data()));
        return true;
    }

    bool take_char(char c)
    {
        if (rest.empty() || rest.front() != c)
            return false;
        rest.remove_prefix(1);
        return true;
    }

    bool take_word(std::string& out)
    {
        size_t n = rest.find_first_of(" \t");
        if (n == 0 || n == std::string_view::npos)
            return false;  // a word must be followed by more
        out.assign(rest.substr(0, n));
        rest.remove_prefix(n);
        return true;
    }

    // Fields are separated by at least one space.
    bool take_separator()
    {
        if (rest.empty() || (rest.front() != ' ' && rest.front() != '\t'))
            return false;
        skip_spaces();
        return true;
    }
};

std::optional<Mapping> parse_line(std::string_view line)
{
    LineReader r{line};
    Mapping m;
    uint64_t major = 0, minor = 0;
    if (!r.take_number(m.start, 16) || !r.take_char('-') || !r.take_number(m.end, 16))
        return std::nullopt;
    if (!r.take_separator() || !r.take_word(m.perms))
        return std::nullopt;
    if (!r.take_separator() || !r.take_number(m.offset, 16))
        return std::nullopt;
    if (!r.take_separator() || !r.take_number(major, 16) || !r.take_char(':') || !r.take_number(minor, 16))
        return std::nullopt;
    if (!r.take_separator() || !r.take_number(m.inode, 10))
        return std::nullopt;
    if (m.end < m.start || major > UINT32_MAX || minor > UINT32_MAX)
        return std::nullopt;
    m.dev_major = static_cast<uint32_t>(major);
    m.dev_minor = static_cast<uint32_t>(minor);

    // Anonymous mappings end right after the inode, perhaps with padding.
    if (!r.rest.empty() && !r.take_separator())
        return std::nullopt;
    std::string_view path = r.rest;
    if (path.size() > kDeletedSuffix.size() && path.substr(path.size() - kDeletedSuffix.size()) == kDeletedSuffix) {
        path.remove_suffix(kDeletedSuffix.size());
        m.deleted = true;
    }
    m.path.assign(path);
    return m;
}

// "[vdso]", "[heap]", "[anon:x]" and anonymous mappings have no file behind them.
bool names_a_file(const Mapping& m)
{
    return !m.path.empty() && m.path.front() == '/';
}

}  // namespace

std::vector<Mapping> parse_maps(const std::string& text)
{
    std::vector<Mapping> maps;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos)
            nl = text.size();
        std::string_view line(text.data() + pos, nl - pos);
        if (!line.empty() && line.back() == '\r')
            line.remove_suffix(1);
        if (auto m = parse_line(line))
            maps.push_back(std::move(*m));
        pos = nl + 1;
    }
    return maps;
}

std::optional<std::vector<Mapping>> read_maps(uint32_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
    if (!in)
        return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    // An exited process can leave an open file that fails on read.
    if (in.bad())
        return std::nullopt;
    return parse_maps(text.str());
}

std::string path_in_target_or_here(uint32_t pid, const Mapping& m)
{
    std::string there = path_in_target(pid, m);
    struct stat st;
    if (there.empty() || stat(there.c_str(), &st) == 0 || m.deleted)
        return there;
    if (stat(m.path.c_str(), &st) == 0 && major(st.st_dev) == m.dev_major && minor(st.st_dev) == m.dev_minor &&
        st.st_ino == m.inode)
        return m.path;
    return "";
}

std::string path_in_target(uint32_t pid, const Mapping& m)
{
    if (!names_a_file(m))
        return "";
    std::string proc = "/proc/" + std::to_string(pid);
    if (!m.deleted)
        return proc + "/root" + m.path;
    // The kernel names map_files entries "%lx-%lx": lowercase hex, no 0x.
    char range[64];
    std::snprintf(range, sizeof range, "%llx-%llx", static_cast<unsigned long long>(m.start),
                  static_cast<unsigned long long>(m.end));
    return proc + "/map_files/" + range;
}

const Mapping* find_mapping(const std::vector<Mapping>& maps, uint64_t addr)
{
    for (const Mapping& m : maps)
        if (addr >= m.start && addr < m.end)
            return &m;
    return nullptr;
}

}  // namespace connleak
