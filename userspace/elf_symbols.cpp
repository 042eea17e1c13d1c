// Reads function symbols, PT_LOAD segments, the GNU build id and the
// .gnu_debuglink of an ELF file with libelf, and finds a separate debug
// file the way gdb does when the file itself was stripped.
#include "elf_symbols.h"

#include <fcntl.h>
#include <gelf.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <tuple>
#include <utility>

namespace connleak {
namespace {

// --- RAII for the handles, so every early return cleans up ---

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    Fd& operator=(Fd&&) = delete;
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

struct ElfEnd {
    void operator()(Elf* e) const { elf_end(e); }
};
using ElfPtr = std::unique_ptr<Elf, ElfEnd>;

// Member order matters: the Elf* must be released before its fd closes.
struct OpenElf {
    Fd fd;
    ElfPtr elf;
};

Result<OpenElf> open_elf(const std::string& path) {
    // libelf refuses to work until the version is set, once per process.
    static const bool version_ok = elf_version(EV_CURRENT) != EV_NONE;
    if (!version_ok) return Error{"libelf: " + std::string(elf_errmsg(-1))};

    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Error{path + ": " + std::strerror(errno)};
    ElfPtr elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
    if (!elf) return Error{path + ": " + elf_errmsg(-1)};
    if (elf_kind(elf.get()) != ELF_K_ELF) return Error{path + ": not an ELF file"};
    return OpenElf{std::move(fd), std::move(elf)};
}

// --- symbols ---

// A function symbol before duplicates at one address are merged.
struct RawSymbol {
    uint64_t addr = 0, size = 0;
    uint64_t section_end = 0;  // end of its section's addresses, 0 if unknown
    int bind = STB_LOCAL;
    std::string name;
};

uint64_t section_end(Elf* e, size_t shndx) {
    if (shndx == SHN_UNDEF || shndx >= SHN_LORESERVE) return 0;
    GElf_Shdr shdr;
    Elf_Scn* scn = elf_getscn(e, shndx);
    if (!scn || !gelf_getshdr(scn, &shdr)) return 0;
    return shdr.sh_addr + shdr.sh_size;
}

bool is_function(const GElf_Sym& sym) {
    int type = GELF_ST_TYPE(sym.st_info);
    return (type == STT_FUNC || type == STT_GNU_IFUNC) && sym.st_shndx != SHN_UNDEF && sym.st_value != 0;
}

void read_symbol_table(Elf* e, Elf_Scn* scn, const GElf_Shdr& shdr, std::vector<RawSymbol>& out) {
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || shdr.sh_entsize == 0) return;
    size_t count = shdr.sh_size / shdr.sh_entsize;
    for (size_t i = 0; i < count; i++) {
        GElf_Sym sym;
        if (!gelf_getsym(data, static_cast<int>(i), &sym) || !is_function(sym)) continue;
        const char* name = elf_strptr(e, shdr.sh_link, sym.st_name);
        if (!name || !*name) continue;
        out.push_back({sym.st_value, sym.st_size, section_end(e, sym.st_shndx), GELF_ST_BIND(sym.st_info), name});
    }
}

// Appends the functions of .symtab and .dynsym; true when a .symtab exists.
bool read_function_symbols(Elf* e, std::vector<RawSymbol>& out) {
    bool has_symtab = false;
    for (Elf_Scn* scn = elf_nextscn(e, nullptr); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr shdr;
        if (!gelf_getshdr(scn, &shdr)) continue;
        if (shdr.sh_type != SHT_SYMTAB && shdr.sh_type != SHT_DYNSYM) continue;
        if (shdr.sh_type == SHT_SYMTAB) has_symtab = true;
        read_symbol_table(e, scn, shdr, out);
    }
    return has_symtab;
}

// Which of several names for one address people should see, as perf picks:
// a sized symbol over a label, the public spelling ("malloc", not
// "__libc_malloc"), a global over a weak or local alias, then a stable order.
bool preferred(const RawSymbol& a, const RawSymbol& b) {
    auto key = [](const RawSymbol& s) {
        int bind_rank = s.bind == STB_GLOBAL ? 0 : s.bind == STB_WEAK ? 1 : 2;
        return std::make_tuple(s.size == 0, s.name.find_first_not_of('_'), bind_rank, std::cref(s.name));
    };
    return key(a) < key(b);
}

// One symbol per address; size-0 symbols reach the next symbol or the end
// of their section, whichever comes first.
std::vector<ElfSymbols::Symbol> build_table(std::vector<RawSymbol> raw) {
    std::sort(raw.begin(), raw.end(), [](const RawSymbol& a, const RawSymbol& b) {
        return a.addr != b.addr ? a.addr < b.addr : preferred(a, b);
    });
    raw.erase(std::unique(raw.begin(), raw.end(), [](const RawSymbol& a, const RawSymbol& b) { return a.addr == b.addr; }),
              raw.end());

    std::vector<ElfSymbols::Symbol> table;
    table.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); i++) {
        const RawSymbol& s = raw[i];
        uint64_t end = s.addr + s.size;
        if (s.size == 0) {
            uint64_t next = i + 1 < raw.size() ? raw[i + 1].addr : UINT64_MAX;
            uint64_t limit = s.section_end > s.addr ? s.section_end : UINT64_MAX;
            end = std::min(next, limit);
            if (end == UINT64_MAX) end = s.addr;  // nothing bounds it: it covers nothing
        }
        table.push_back({s.addr, end, s.name});
    }
    return table;
}

// --- segments and notes ---

std::vector<ElfSymbols::Segment> read_segments(Elf* e) {
    std::vector<ElfSymbols::Segment> out;
    size_t n = 0;
    if (elf_getphdrnum(e, &n) != 0) return out;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e, static_cast<int>(i), &ph) || ph.p_type != PT_LOAD || ph.p_filesz == 0) continue;
        out.push_back({ph.p_offset, ph.p_filesz, ph.p_vaddr, (ph.p_flags & PF_X) != 0});
    }
    return out;
}

std::string to_hex(const unsigned char* p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (size_t i = 0; i < n; i++) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 0xf];
    }
    return s;
}

std::string build_id_in(Elf_Data* data) {
    if (!data || !data->d_buf) return "";
    auto* bytes = static_cast<const unsigned char*>(data->d_buf);
    GElf_Nhdr nh;
    size_t off = 0, name_off = 0, desc_off = 0, next = 0;
    while ((next = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
        if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 && std::memcmp(bytes + name_off, "GNU", 4) == 0)
            return to_hex(bytes + desc_off, nh.n_descsz);
        off = next;
    }
    return "";
}

// From the note sections, or the PT_NOTE segments when sections are gone.
std::string read_build_id(Elf* e) {
    for (Elf_Scn* scn = elf_nextscn(e, nullptr); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr shdr;
        if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_NOTE) continue;
        std::string id = build_id_in(elf_getdata(scn, nullptr));
        if (!id.empty()) return id;
    }
    size_t n = 0;
    if (elf_getphdrnum(e, &n) != 0) return "";
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e, static_cast<int>(i), &ph) || ph.p_type != PT_NOTE) continue;
        std::string id = build_id_in(elf_getdata_rawchunk(e, ph.p_offset, ph.p_filesz, ELF_T_NHDR));
        if (!id.empty()) return id;
    }
    return "";
}

struct Debuglink {
    std::string name;
    uint32_t crc = 0;
};

// .gnu_debuglink holds a NUL-terminated file name, padding to 4, then the
// CRC32 of the debug file in the ELF file's byte order.
std::optional<Debuglink> read_debuglink(Elf* e) {
    size_t shstrndx = 0;
    if (elf_getshdrstrndx(e, &shstrndx) != 0) return std::nullopt;
    for (Elf_Scn* scn = elf_nextscn(e, nullptr); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr shdr;
        if (!gelf_getshdr(scn, &shdr)) continue;
        const char* name = elf_strptr(e, shstrndx, shdr.sh_name);
        if (!name || std::strcmp(name, ".gnu_debuglink") != 0) continue;
        Elf_Data* data = elf_getdata(scn, nullptr);
        if (!data || !data->d_buf) return std::nullopt;
        auto* bytes = static_cast<const unsigned char*>(data->d_buf);
        size_t len = strnlen(reinterpret_cast<const char*>(bytes), data->d_size);
        size_t crc_at = (len + 1 + 3) & ~size_t{3};
        if (len == 0 || crc_at + 4 > data->d_size) return std::nullopt;
        const unsigned char* c = bytes + crc_at;
        bool msb = elf_getident(e, nullptr)[EI_DATA] == ELFDATA2MSB;
        uint32_t crc = msb ? (uint32_t{c[0]} << 24 | uint32_t{c[1]} << 16 | uint32_t{c[2]} << 8 | c[3])
                           : (uint32_t{c[3]} << 24 | uint32_t{c[2]} << 16 | uint32_t{c[1]} << 8 | c[0]);
        return Debuglink{std::string(reinterpret_cast<const char*>(bytes), len), crc};
    }
    return std::nullopt;
}

// --- finding the separate debug file ---

// The zlib CRC32 that .gnu_debuglink records.
std::optional<uint32_t> file_crc32(const std::string& path) {
    static const auto table = [] {
        std::array<uint32_t, 256> t{};
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return std::nullopt;
    uint32_t crc = 0xFFFFFFFFu;
    std::array<unsigned char, 65536> buf;
    for (;;) {
        ssize_t n = ::read(fd.get(), buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return std::nullopt;
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++) crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
    }
    return crc ^ 0xFFFFFFFFu;
}

// "/proc/N/root/usr/lib/x.so" → {"/proc/N/root", "/usr/lib/x.so"}, so debug
// files are looked up inside the target's root. A map_files path has no
// usable name, only the root; any other path is taken as is.
struct RootedPath {
    std::string root, path;
};

RootedPath split_proc_root(const std::string& p) {
    const std::string proc = "/proc/";
    if (p.compare(0, proc.size(), proc) != 0) return {"", p};
    size_t slash = p.find('/', proc.size());
    if (slash == std::string::npos) return {"", p};
    std::string root = p.substr(0, slash) + "/root";
    if (p.compare(slash, 6, "/root/") == 0) return {root, p.substr(slash + 5)};
    if (p.compare(slash, 11, "/map_files/") == 0) return {root, ""};
    return {"", p};
}

std::string dir_of(const std::string& path) {
    size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "" : path.substr(0, slash);
}

struct Candidate {
    std::string path;
    bool by_build_id = false;
};

// gdb's order: the build-id tree, then the debuglink beside the file, in
// .debug/ beside it, and under the debug root.
std::vector<Candidate> debug_candidates(const std::string& path, const std::string& build_id,
                                        const std::optional<Debuglink>& link, const ElfOptions& opts) {
    std::vector<Candidate> out;
    RootedPath rp = split_proc_root(path);
    std::string debug_root = rp.root + opts.debug_root;
    if (build_id.size() > 2)
        out.push_back({debug_root + "/.build-id/" + build_id.substr(0, 2) + "/" + build_id.substr(2) + ".debug", true});
    if (link && !rp.path.empty()) {
        std::string dir = dir_of(path);
        out.push_back({dir + "/" + link->name, false});
        out.push_back({dir + "/.debug/" + link->name, false});
        out.push_back({debug_root + dir_of(rp.path) + "/" + link->name, false});
    }
    return out;
}

// A debug file belongs to the binary when the build ids agree, or, without
// build ids, when its CRC is the one the debuglink recorded.
bool matches(const std::string& candidate, Elf* debug, const std::string& build_id,
             const std::optional<Debuglink>& link, bool by_build_id) {
    std::string id = read_build_id(debug);
    if (!build_id.empty() && !id.empty()) return id == build_id;
    if (by_build_id || !link) return false;
    std::optional<uint32_t> crc = file_crc32(candidate);
    return crc && *crc == link->crc;
}

// Adds the symbols of the first matching debug file; returns its path.
std::string load_debug_symbols(const std::string& path, const std::string& build_id,
                               const std::optional<Debuglink>& link, const ElfOptions& opts,
                               std::vector<RawSymbol>& out) {
    for (const Candidate& c : debug_candidates(path, build_id, link, opts)) {
        if (c.path == path || ::access(c.path.c_str(), R_OK) != 0) continue;
        Result<OpenElf> debug = open_elf(c.path);
        if (!debug) continue;
        Elf* e = debug->elf.get();
        if (!matches(c.path, e, build_id, link, c.by_build_id)) continue;
        read_function_symbols(e, out);
        return c.path;
    }
    return "";
}

}  // namespace

Result<ElfSymbols> ElfSymbols::load(const std::string& path, const ElfOptions& opts) {
    Result<OpenElf> opened = open_elf(path);
    if (!opened) return opened.error();
    Elf* e = opened->elf.get();

    ElfSymbols out;
    out.segments_ = read_segments(e);
    out.build_id_ = read_build_id(e);
    std::optional<Debuglink> link = read_debuglink(e);
    if (link) out.debuglink_ = link->name;

    std::vector<RawSymbol> raw;
    bool has_symtab = read_function_symbols(e, raw);
    if (!has_symtab && opts.use_debug_files)
        out.debug_file_ = load_debug_symbols(path, out.build_id_, link, opts, raw);
    out.symbols_ = build_table(std::move(raw));
    return out;
}

std::optional<uint64_t> ElfSymbols::offset_to_vaddr(uint64_t file_offset) const {
    // Executable segments first: code is what return addresses point into.
    for (bool want_exec : {true, false})
        for (const Segment& s : segments_)
            if (s.exec == want_exec && file_offset >= s.offset && file_offset - s.offset < s.filesz)
                return file_offset - s.offset + s.vaddr;
    return std::nullopt;
}

std::optional<uint64_t> ElfSymbols::function_offset(const std::string& name) const {
    for (const Symbol& sym : symbols_)
        if (sym.name == name)
            for (const Segment& seg : segments_)
                if (sym.addr >= seg.vaddr && sym.addr - seg.vaddr < seg.filesz)
                    return sym.addr - seg.vaddr + seg.offset;
    return std::nullopt;
}

std::optional<SymbolHit> ElfSymbols::lookup_vaddr(uint64_t vaddr) const {
    auto it = std::upper_bound(symbols_.begin(), symbols_.end(), vaddr,
                               [](uint64_t v, const Symbol& s) { return v < s.addr; });
    // A few steps back, for the rare symbol nested inside a larger one.
    for (int steps = 0; it != symbols_.begin() && steps < 8; steps++) {
        --it;
        if (vaddr < it->end) return SymbolHit{it->name, vaddr - it->addr};
    }
    return std::nullopt;
}

std::optional<SymbolHit> ElfSymbols::lookup_offset(uint64_t file_offset) const {
    std::optional<uint64_t> vaddr = offset_to_vaddr(file_offset);
    if (!vaddr) return std::nullopt;
    return lookup_vaddr(*vaddr);
}

}  // namespace connleak
