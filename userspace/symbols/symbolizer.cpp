// Symbolizer: one libdwfl module per ELF file, placed at its link-time
// addresses, and the choice of one name per address.
#include "symbolizer.h"

#include <cxxabi.h>
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace connleak {

struct Symbolizer::Module {
    Dwfl_Callbacks callbacks{};
    std::string debuginfo_path;
    std::string debug_root;  // in the target's root: /proc/N/root/usr/lib/debug
    char* debuginfo_path_ptr = nullptr;
    Dwfl* dwfl = nullptr;
    Dwfl_Module* mod = nullptr;
    GElf_Addr bias = 0;  // module addresses - the file's own
    struct Segment {
        uint64_t offset = 0, filesz = 0, vaddr = 0;
        bool exec = false;
    };
    std::vector<Segment> segments;  // PT_LOAD with file bytes
    std::string build_id;

    struct Symbol {
        uint64_t addr = 0, end = 0;  // [addr, end), module addresses
        std::string name;
    };
    bool symbols_read = false;
    std::vector<Symbol> symbols;  // sorted by addr, one per address

    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    ~Module()
    {
        if (dwfl)
            dwfl_end(dwfl);
    }
};

namespace {

using Module = Symbolizer::Module;

std::string base_name(const std::string& path)
{
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// "/proc/N/root/usr/lib/x.so" and "/proc/N/map_files/..." → "/proc/N/root",
// so debug files are looked up inside the target's root; else "".
std::string proc_root_of(const std::string& p)
{
    const std::string proc = "/proc/";
    if (p.compare(0, proc.size(), proc) != 0)
        return "";
    size_t slash = p.find('/', proc.size());
    if (slash == std::string::npos)
        return "";
    if (p.compare(slash, 6, "/root/") == 0 || p.compare(slash, 11, "/map_files/") == 0)
        return p.substr(0, slash) + "/root";
    return "";
}

int no_debuginfo(Dwfl_Module*, void**, const char*, Dwarf_Addr, const char*, const char*, GElf_Word, char**)
{
    return -1;
}

// --- the separate debug file, from local paths only ---

// `candidate` opened, when it is a debug file of the module: not the
// module's own file, and of the module's build id. -1 otherwise.
int open_if_debug_file_of(Dwfl_Module* mod, const struct stat& own, const std::string& candidate)
{
    int fd = ::open(candidate.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    bool same_id = false;
    if (::fstat(fd, &st) == 0 && !(st.st_dev == own.st_dev && st.st_ino == own.st_ino)) {
        const unsigned char* want = nullptr;
        GElf_Addr vaddr = 0;
        const int want_len = dwfl_module_build_id(mod, &want, &vaddr);
        Elf* e = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
        const void* have = nullptr;
        const ssize_t have_len = e ? dwelf_elf_gnu_build_id(e, &have) : -1;
        same_id = want_len > 0 && have_len == want_len && std::memcmp(want, have, want_len) == 0;
        if (e)
            elf_end(e);
    }
    if (!same_id) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Where a .gnu_debuglink name is looked for, as libdwfl and gdb do: beside
// the file, in .debug/ beside it, then under the debug root + the file's
// directory, less one leading directory at a time (ROOT/usr/lib/x/,
// ROOT/lib/x/, ROOT/x/). For /proc/N/root/DIR/f, DIR is N's and so is ROOT.
std::vector<std::string> debuglink_candidates(const std::string& file, const std::string& link,
                                              const std::string& debug_root)
{
    const size_t slash = file.rfind('/');
    const std::string dir = slash == std::string::npos ? "./" : file.substr(0, slash + 1);
    std::vector<std::string> out{dir + link, dir + ".debug/" + link};
    const std::string root = proc_root_of(file);
    std::string sub;  // the directory as the target sees it
    if (root.empty())
        sub = dir;
    else if (dir.compare(0, root.size() + 1, root + "/") == 0)  // map_files/ has no directory to go by
        sub = dir.substr(root.size());
    if (sub.empty() || sub[0] != '/')
        return out;
    for (size_t pos = 0; pos != std::string::npos && pos + 1 < sub.size(); pos = sub.find('/', pos + 1))
        out.push_back(debug_root + sub.substr(pos) + link);
    return out;
}

// libdwfl's find_debuginfo without debuginfod: dwfl_standard_find_debuginfo
// asks debuginfod once the local search fails, which dlopens libdebuginfod
// (curl, gnutls, krb5: tens of ms and MBs) and, with DEBUGINFOD_URLS set,
// goes to the network. A tracing tool reads local files only.
int find_local_debuginfo(Dwfl_Module* mod, void** userdata, const char* modname, Dwarf_Addr base, const char* file_name,
                         const char* debuglink_file, GElf_Word debuglink_crc, char** debuginfo_file_name)
{
    const unsigned char* bits = nullptr;
    GElf_Addr vaddr = 0;
    if (dwfl_module_build_id(mod, &bits, &vaddr) <= 0)
        // No build id, so nothing to ask debuginfod for: libdwfl's own
        // search checks the debuglink CRC (elfutils exposes no CRC helper).
        return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file, debuglink_crc,
                                            debuginfo_file_name);
    int fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file, debuglink_crc,
                                          debuginfo_file_name);
    if (fd >= 0 || !file_name || !debuglink_file || !*debuglink_file || !*userdata)
        return fd;
    struct stat own;
    if (::stat(file_name, &own) != 0)
        return -1;
    const Module& m = *static_cast<const Module*>(*userdata);
    for (const std::string& candidate : debuglink_candidates(file_name, debuglink_file, m.debug_root)) {
        fd = open_if_debug_file_of(mod, own, candidate);
        if (fd >= 0) {
            *debuginfo_file_name = ::strdup(candidate.c_str());
            return fd;
        }
    }
    return -1;
}

// --- one name per address ---

struct RawSymbol {
    uint64_t addr = 0, size = 0;
    uint64_t section_end = 0;  // end of its section's addresses, 0 if unknown
    int bind = STB_LOCAL;
    std::string name;
};

bool is_function(const GElf_Sym& sym)
{
    int type = GELF_ST_TYPE(sym.st_info);
    return (type == STT_FUNC || type == STT_GNU_IFUNC) && sym.st_shndx != SHN_UNDEF && sym.st_value != 0;
}

uint64_t section_end(Elf* e, GElf_Word shndx, Dwarf_Addr bias)
{
    if (!e || shndx == SHN_UNDEF || shndx == static_cast<GElf_Word>(-1))
        return 0;
    GElf_Shdr shdr;
    Elf_Scn* scn = elf_getscn(e, shndx);
    if (!scn || !gelf_getshdr(scn, &shdr))
        return 0;
    return shdr.sh_addr + shdr.sh_size + bias;
}

// Which of several names for one address people should see, as perf picks:
// a sized symbol over a label, the public spelling ("malloc", not
// "__libc_malloc"), a global over a weak or local alias, then a stable order.
bool preferred(const RawSymbol& a, const RawSymbol& b)
{
    auto key = [](const RawSymbol& s) {
        int bind_rank = s.bind == STB_GLOBAL ? 0 : s.bind == STB_WEAK ? 1 : 2;
        return std::make_tuple(s.size == 0, s.name.find_first_not_of('_'), bind_rank, std::cref(s.name));
    };
    return key(a) < key(b);
}

// One symbol per address; size-0 symbols reach the next symbol or the end
// of their section, whichever comes first.
std::vector<Module::Symbol> build_table(std::vector<RawSymbol> raw)
{
    std::sort(raw.begin(), raw.end(), [](const RawSymbol& a, const RawSymbol& b) {
        return a.addr != b.addr ? a.addr < b.addr : preferred(a, b);
    });
    raw.erase(
        std::unique(raw.begin(), raw.end(), [](const RawSymbol& a, const RawSymbol& b) { return a.addr == b.addr; }),
        raw.end());
    std::vector<Module::Symbol> table;
    table.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); i++) {
        const RawSymbol& s = raw[i];
        uint64_t end = s.addr + s.size;
        if (s.size == 0) {
            uint64_t next = i + 1 < raw.size() ? raw[i + 1].addr : UINT64_MAX;
            uint64_t limit = s.section_end > s.addr ? s.section_end : UINT64_MAX;
            end = std::min(next, limit);
            if (end == UINT64_MAX)
                end = s.addr;  // nothing bounds it: it covers nothing
        }
        table.push_back({s.addr, end, s.name});
    }
    return table;
}

// The file's own .dynsym, which libdwfl leaves out once it found a .symtab
// (the debug file's). Its names are the plain ones ("__libc_start_main")
// where glibc's .symtab spells the version ("__libc_start_main@@GLIBC_2.34").
void read_dynsym(Module& m, std::vector<RawSymbol>& out)
{
    Dwarf_Addr bias = 0;
    Elf* e = dwfl_module_getelf(m.mod, &bias);
    for (Elf_Scn* scn = e ? elf_nextscn(e, nullptr) : nullptr; scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr shdr;
        if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != SHT_DYNSYM || shdr.sh_entsize == 0)
            continue;
        Elf_Data* data = elf_getdata(scn, nullptr);
        const size_t count = data ? shdr.sh_size / shdr.sh_entsize : 0;
        for (size_t i = 0; i < count; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, static_cast<int>(i), &sym) || !is_function(sym))
                continue;
            const char* name = elf_strptr(e, shdr.sh_link, sym.st_name);
            if (name && *name)
                out.push_back({sym.st_value + bias, sym.st_size, section_end(e, sym.st_shndx, bias),
                               GELF_ST_BIND(sym.st_info), name});
        }
    }
}

// The functions of the symbol table libdwfl chose (the file's .symtab, else
// the debug file's, else .dynsym), and the file's .dynsym.
void read_symbols(Module& m)
{
    if (m.symbols_read)
        return;
    m.symbols_read = true;
    std::vector<RawSymbol> raw;
    read_dynsym(m, raw);
    const int n = dwfl_module_getsymtab(m.mod);
    for (int i = 1; i < n; i++) {
        GElf_Sym sym;
        GElf_Addr addr = 0;
        GElf_Word shndx = 0;
        Elf* elf = nullptr;
        Dwarf_Addr bias = 0;
        const char* name = dwfl_module_getsym_info(m.mod, i, &sym, &addr, &shndx, &elf, &bias);
        if (!name || !*name || !is_function(sym))
            continue;
        raw.push_back({addr, sym.st_size, section_end(elf, shndx, bias), GELF_ST_BIND(sym.st_info), name});
    }
    m.symbols = build_table(std::move(raw));
}

const Module::Symbol* symbol_at(Module& m, uint64_t addr)
{
    read_symbols(m);
    auto it = std::upper_bound(m.symbols.begin(), m.symbols.end(), addr,
                               [](uint64_t v, const Module::Symbol& s) { return v < s.addr; });
    // A few steps back, for the rare symbol nested inside a larger one.
    for (int steps = 0; it != m.symbols.begin() && steps < 8; steps++) {
        --it;
        if (addr < it->end)
            return &*it;
    }
    return nullptr;
}

// The module address of the byte at `file_offset`, through the PT_LOAD
// holding it (executable segments first: code is what frames point into).
std::optional<uint64_t> offset_to_addr(const Module& m, uint64_t file_offset)
{
    for (bool want_exec : {true, false})
        for (const Module::Segment& s : m.segments)
            if (s.exec == want_exec && file_offset >= s.offset && file_offset - s.offset < s.filesz)
                return file_offset - s.offset + s.vaddr + m.bias;
    return std::nullopt;
}

std::string source_at(Module& m, uint64_t addr)
{
    Dwfl_Line* line = dwfl_module_getsrc(m.mod, addr);
    if (!line)
        return "";
    int lineno = 0;
    const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr);
    if (!file || lineno <= 0)
        return "";
    const char* base = std::strrchr(file, '/');
    return std::string(base ? base + 1 : file) + ":" + std::to_string(lineno);
}

std::string hex_bytes(const unsigned char* p, int n)
{
    static const char digits[] = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < n; i++) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 0xf];
    }
    return s;
}

// Opens `path` as a libdwfl module at its link-time addresses.
Result<std::unique_ptr<Module>> open_module(const std::string& path, const SymbolizerOptions& opts)
{
    static const bool version_ok = elf_version(EV_CURRENT) != EV_NONE;
    if (!version_ok)
        return Error{"libelf: " + std::string(elf_errmsg(-1))};
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return Error{path + ": " + std::strerror(errno)};
    // libdwfl says "not a valid ELF file" for anything it cannot read;
    // libelf tells a directory or a text file apart.
    Elf* probe = elf_begin(fd, ELF_C_READ_MMAP, nullptr);
    const bool is_elf = probe && elf_kind(probe) == ELF_K_ELF;
    std::string why = probe ? "not an ELF file" : elf_errmsg(-1);
    if (probe)
        elf_end(probe);
    if (!is_elf) {
        ::close(fd);
        return Error{path + ": " + why};
    }

    auto m = std::make_unique<Module>();
    m->debug_root = proc_root_of(path) + opts.debug_root;
    m->debuginfo_path = ":.debug:" + m->debug_root;
    m->debuginfo_path_ptr = m->debuginfo_path.data();
    m->callbacks.find_elf = dwfl_build_id_find_elf;  // not called: the fd is given
    // A relocatable file (ET_REL) needs section addresses assigned; a
    // target can map any file, so this must not be a null callback.
    m->callbacks.section_address = dwfl_offline_section_address;
    m->callbacks.find_debuginfo = opts.use_debug_files ? find_local_debuginfo : no_debuginfo;
    m->callbacks.debuginfo_path = &m->debuginfo_path_ptr;
    m->dwfl = dwfl_begin(&m->callbacks);
    if (!m->dwfl) {
        ::close(fd);
        return Error{path + ": libdwfl: " + dwfl_errmsg(-1)};
    }
    dwfl_report_begin(m->dwfl);
    m->mod = dwfl_report_elf(m->dwfl, base_name(path).c_str(), path.c_str(), fd, 0, true);
    dwfl_report_end(m->dwfl, nullptr, nullptr);
    if (!m->mod) {
        ::close(fd);
        return Error{path + ": " + dwfl_errmsg(-1)};
    }
    void** userdata = nullptr;  // find_local_debuginfo's way back to the module
    dwfl_module_info(m->mod, &userdata, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
    *userdata = m.get();
    Elf* e = dwfl_module_getelf(m->mod, &m->bias);
    size_t n = 0;
    if (e && elf_getphdrnum(e, &n) == 0)
        for (size_t i = 0; i < n; i++) {
            GElf_Phdr ph;
            if (gelf_getphdr(e, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD && ph.p_filesz)
                m->segments.push_back({ph.p_offset, ph.p_filesz, ph.p_vaddr, (ph.p_flags & PF_X) != 0});
        }
    const unsigned char* bits = nullptr;
    GElf_Addr vaddr = 0;
    int len = dwfl_module_build_id(m->mod, &bits, &vaddr);
    if (len > 0)
        m->build_id = hex_bytes(bits, len);
    return m;
}

NativeFrame frame_in(Module* m, const std::string& module, uint64_t file_offset, bool with_source)
{
    NativeFrame f;
    f.module = module;
    f.file_offset = file_offset;
    if (!m)
        return f;
    f.build_id = m->build_id;
    std::optional<uint64_t> addr = offset_to_addr(*m, file_offset);
    if (!addr)
        return f;
    if (const Module::Symbol* sym = symbol_at(*m, *addr)) {
        f.function = demangle(sym->name);
        f.function_offset = *addr - sym->addr;
    }
    // The C runtime's entries: their file:line ("libc-start.c:360") says
    // nothing, and asking makes libdw inflate all of libc's DWARF when
    // libc6-dbg is installed (~0.1 s of CPU and ~15 MB per connleak run).
    if (with_source && !is_runtime_entry_function(f.function) && *addr > 0)
        f.source = source_at(*m, *addr - 1);
    return f;
}

}  // namespace

std::string demangle(const std::string& name)
{
    if (name.compare(0, 2, "_Z") != 0)
        return name;
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status), std::free);
    return status == 0 && out ? std::string(out.get()) : name;
}

bool is_runtime_entry_function(const std::string& function)
{
    static const char* const entries[] = {
        "_start", "__libc_start_main", "__libc_start_call_main", "start_thread", "clone", "clone3"};
    for (const char* e : entries)
        if (function == e)
            return true;
    return false;
}

Symbolizer::Symbolizer(SymbolizerOptions opts) : opts_(std::move(opts)) {}
Symbolizer::~Symbolizer() = default;

Symbolizer::Module* Symbolizer::module_for(const NativeFile& file)
{
    struct stat st;
    if (file.path.empty() || ::stat(file.path.c_str(), &st) != 0) {
        // Gone (the process exited): the file read before under its inode.
        auto it = file.inode ? by_inode_.find({file.dev, file.inode}) : by_inode_.end();
        return it == by_inode_.end() ? nullptr : it->second;
    }
    FileKey key{st.st_dev, st.st_ino, st.st_size, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
    auto it = cache_.find(key);
    if (it == cache_.end()) {
        auto opened = open_module(file.path, opts_);
        it = cache_.emplace(key, opened ? std::move(opened.value()) : nullptr).first;
        if (it->second)
            by_inode_[{st.st_dev, st.st_ino}] = it->second.get();
    }
    return it->second.get();
}

NativeFrame Symbolizer::frame(const NativeFile& file, uint64_t file_offset, bool with_source)
{
    const std::string module = file.module.empty() ? base_name(file.path) : file.module;
    return frame_in(module_for(file), module, file_offset, with_source);
}

std::string Symbolizer::name(const std::string& path, const std::string& module, uint64_t file_offset)
{
    return format_frame(frame(NativeFile{path, module}, file_offset, false), false);
}

std::optional<uint64_t> Symbolizer::function_offset(const std::string& path, const std::string& function)
{
    Module* m = module_for(NativeFile{path, ""});
    if (!m)
        return std::nullopt;
    read_symbols(*m);
    for (const Module::Symbol& sym : m->symbols)
        if (sym.name == function)
            for (const Module::Segment& seg : m->segments) {
                const uint64_t vaddr = sym.addr - m->bias;
                if (vaddr >= seg.vaddr && vaddr - seg.vaddr < seg.filesz)
                    return vaddr - seg.vaddr + seg.offset;
            }
    return std::nullopt;
}

std::optional<uint64_t> Symbolizer::symbol_offset(const std::string& path, const std::string& symbol)
{
    Module* m = module_for(NativeFile{path, ""});
    if (!m)
        return std::nullopt;
    // Any defined symbol, data too (function_offset's table keeps functions only).
    const int n = dwfl_module_getsymtab(m->mod);
    for (int i = 1; i < n; i++) {
        GElf_Sym sym;
        GElf_Addr addr = 0;
        const char* name = dwfl_module_getsym_info(m->mod, i, &sym, &addr, nullptr, nullptr, nullptr);
        if (!name || sym.st_shndx == SHN_UNDEF || symbol != name)
            continue;
        const uint64_t vaddr = addr - m->bias;
        for (const Module::Segment& seg : m->segments)
            if (vaddr >= seg.vaddr && vaddr - seg.vaddr < seg.filesz)
                return vaddr - seg.vaddr + seg.offset;
    }
    return std::nullopt;
}

std::string Symbolizer::debug_file(const std::string& path)
{
    Module* m = module_for(NativeFile{path, ""});
    if (!m)
        return "";
    read_symbols(*m);
    const char* debug = nullptr;
    dwfl_module_info(m->mod, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &debug);
    return debug ? debug : "";
}

Result<NativeFrame> symbolize_file_offset(const std::string& path, uint64_t file_offset, const SymbolizerOptions& opts)
{
    auto m = open_module(path, opts);
    if (!m)
        return m.error();
    return frame_in(m.value().get(), base_name(path), file_offset, true);
}

}  // namespace connleak
