// Python interpreter layouts (see python_layout.h).
#include "python_layout.h"

#include <asm/prctl.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <map>
#include <optional>
#include <pthread.h>
#include <regex>
#include <set>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proc_maps.h"
#include "symbolizer.h"

namespace connleak {
namespace {

// CPython 3.11 (Debian 12's python3.11), from Include/internal/pycore_*.h
// (offsetof, checked against the 3.11.2 headers).
PythonVersionLayout python311()
{
    PythonVersionLayout v;
    v.version = 0x030b;
    v.tested = true;
    v.runtime_tss_key = 592;
    v.runtime_interpreters_head = 40;
    v.interp_threads_head = 16;
    v.tstate_next = 8;
    v.tstate_native_thread_id = 160;
    python_layout& k = v.kernel;
    k.tstate_frame = 56;  // PyThreadState.cframe
    k.cframe_frame = 8;   // _PyCFrame.current_frame
    k.frame_code = 32;
    k.frame_previous = 48;
    k.frame_prev_instr = 56;
    k.frame_is_entry = 68;
    k.frame_owner = 69;
    k.code_adaptive = 184;  // PyCodeObject.co_code_adaptive
    k.code_filename = 112;
    k.code_qualname = 128;
    k.code_linetable = 136;
    k.code_firstlineno = 72;
    k.unicode_state = 32;
    k.unicode_ascii_data = 48;  // sizeof(PyASCIIObject)
    k.unicode_utf8 = 56;        // PyCompactUnicodeObject.utf8
    k.bytes_size = 16;
    k.bytes_data = 32;
    return v;
}

bool read_target(uint32_t pid, uint64_t addr, void* out, size_t len)
{
    iovec local{out, len}, remote{reinterpret_cast<void*>(addr), len};
    return process_vm_readv(static_cast<pid_t>(pid), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
}

template <typename T>
bool read_value(uint32_t pid, uint64_t addr, T* out)
{
    return read_target(pid, addr, out, sizeof(T));
}

std::string base_name(const std::string& path)
{
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The address in the process of a file offset of mapping `m`'s file.
std::optional<uint64_t> address_of(const std::vector<Mapping>& maps, const Mapping& file, uint64_t offset)
{
    for (const Mapping& m : maps)
        if (m.inode == file.inode && m.dev_major == file.dev_major && m.dev_minor == file.dev_minor &&
            offset >= m.offset && offset < m.offset + (m.end - m.start))
            return m.start + (offset - m.offset);
    return std::nullopt;
}

bool is_libc(const std::string& path)
{
    const std::string name = base_name(path);
    return name.compare(0, 8, "libc.so.") == 0 ||
           (name.compare(0, 5, "libc-") == 0 && name.find(".so") != std::string::npos);
}

const Mapping* find_libc(const std::vector<Mapping>& maps)
{
    for (const Mapping& m : maps)
        if (m.inode && is_libc(m.path))
            return &m;
    return nullptr;
}

std::set<uint64_t> threads_of(uint32_t pid)
{
    std::set<uint64_t> tids;
    DIR* d = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
    if (!d)
        return tids;
    while (dirent* e = readdir(d))
        if (e->d_name[0] != '.')
            tids.insert(std::strtoull(e->d_name, nullptr, 10));
    closedir(d);
    return tids;
}

}  // namespace

const std::vector<PythonVersionLayout>& python_layouts()
{
    // 3.12 and 3.13 are an entry each here (3.12: entries marked by
    // FRAME_OWNED_BY_CSTACK shim frames, frame_is_entry = PY_NO_OFFSET;
    // 3.13: PyThreadState.current_frame, cframe_frame = PY_NO_OFFSET, and
    // _Py_DebugOffsets at the start of _PyRuntime to fill it from), once
    // measured against a real interpreter.
    static const std::vector<PythonVersionLayout> table = {python311()};
    return table;
}

const PythonVersionLayout* python_layout_for(uint32_t py_version)
{
    for (const PythonVersionLayout& v : python_layouts())
        if (v.version == py_version >> 16)
            return &v;
    return nullptr;
}

std::string python_version_string(uint32_t v)
{
    return std::to_string(v >> 24) + "." + std::to_string((v >> 16) & 0xff) + "." + std::to_string((v >> 8) & 0xff);
}

PythonFound probe_python(uint32_t pid, uint64_t tsd_key0, uint32_t generation)
{
    PythonFound found;
    auto maps = read_maps(pid);
    if (!maps)
        return found;
    static const std::regex python_file(R"(^(python3\.\d+|libpython3\.\d+\.so.*)$)");
    const Mapping* interp = nullptr;
    for (const Mapping& m : *maps)
        if (m.inode && m.offset == 0 && std::regex_match(base_name(m.path), python_file)) {
            interp = &m;
            break;
        }
    if (!interp)
        return found;
    found.state = PythonProbe::unsupported;
    // The interpreter's file named like any other (one symbolizer), cached
    // per file: every Python process of a host shares a few interpreters.
    static Symbolizer symbols;
    const std::string file = path_in_target(pid, *interp);
    const auto runtime_offset = symbols.symbol_offset(file, "_PyRuntime");
    const auto version_offset = symbols.symbol_offset(file, "Py_Version");
    if (!runtime_offset || !version_offset) {
        found.message = base_name(interp->path) + " exports no _PyRuntime or Py_Version";
        return found;
    }
    auto runtime = address_of(*maps, *interp, *runtime_offset);
    auto version_at = address_of(*maps, *interp, *version_offset);
    uint32_t py_version = 0;
    if (!runtime || !version_at || !read_value(pid, *version_at, &py_version)) {
        found.state = PythonProbe::not_ready;  // mid-exec, or gone: look again
        return found;
    }
    found.process.py_version = py_version;
    const PythonVersionLayout* v = python_layout_for(py_version);
    if (!v) {
        found.message = "Python " + python_version_string(py_version) + " is not supported (no layout for it)";
        return found;
    }
    // The TSD slot is measured in connleak's libc: the target's must be the same file.
    auto own = read_maps(static_cast<uint32_t>(getpid()));
    const Mapping* own_libc = own ? find_libc(*own) : nullptr;
    const Mapping* libc = find_libc(*maps);
    if (!libc) {  // just exec'ed: the dynamic loader has not mapped it yet
        found.state = PythonProbe::not_ready;
        return found;
    }
    if (!own_libc || own_libc->inode != libc->inode || own_libc->dev_major != libc->dev_major ||
        own_libc->dev_minor != libc->dev_minor) {
        found.message = "its C library is not connleak's (" + libc->path + "): its thread states cannot be found";
        return found;
    }
    struct {
        int32_t initialized;
        uint32_t key;
    } tss{};
    if (!read_value(pid, *runtime + v->runtime_tss_key, &tss)) {
        found.state = PythonProbe::not_ready;
        return found;
    }
    if (!tss.initialized) {
        found.state = PythonProbe::not_ready;
        return found;
    }
    if (tss.key >= 32) {  // PTHREAD_KEY_2NDLEVEL_SIZE: beyond, glibc allocates blocks elsewhere
        found.message = "its thread-state key " + std::to_string(tss.key) + " is not in the first block";
        return found;
    }
    // The offsets hold if walking from _PyRuntime reaches a thread state
    // whose native id is one of the process's threads.
    uint64_t interp_state = 0, tstate = 0;
    if (!read_value(pid, *runtime + v->runtime_interpreters_head, &interp_state) || !interp_state) {
        found.state = PythonProbe::not_ready;
        return found;
    }
    read_value(pid, interp_state + v->interp_threads_head, &tstate);
    const std::set<uint64_t> tids = threads_of(pid);
    bool matched = false;
    for (int i = 0; i < 256 && tstate && !matched; i++) {
        uint64_t native_id = 0;
        if (read_value(pid, tstate + v->tstate_native_thread_id, &native_id) && tids.count(native_id))
            matched = true;
        if (!read_value(pid, tstate + v->tstate_next, &tstate))
            break;
    }
    if (!matched) {
        found.state = tstate ? PythonProbe::unsupported : PythonProbe::not_ready;
        found.message = "Python " + python_version_string(py_version) + ": no thread state matches its threads";
        return found;
    }
    found.state = PythonProbe::ready;
    found.process.layout = v->kernel;
    found.process.layout.tsd_offset = tsd_key0 + 16ULL * tss.key;
    found.process.layout.generation = generation;
    return found;
}

Result<uint64_t> own_tsd_key0_offset()
{
    // glibc keeps keys below 32 in struct pthread, at the thread pointer:
    // an array of {seq, data}. Set a value and find it there.
    pthread_key_t key;
    if (pthread_key_create(&key, nullptr) != 0)
        return Error{"pthread_key_create failed"};
    uint64_t fs = 0;
    std::optional<uint64_t> found;
    static char marker;
    if (key < 32 && syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) == 0 && pthread_setspecific(key, &marker) == 0) {
        std::vector<uint64_t> words(512);
        if (read_target(static_cast<uint32_t>(getpid()), fs, words.data(), words.size() * 8)) {
            for (size_t i = 0; i < words.size(); i++)
                if (words[i] == reinterpret_cast<uint64_t>(&marker)) {
                    found = i * 8 - 16ULL * key;
                    break;
                }
        }
        pthread_setspecific(key, nullptr);
    }
    pthread_key_delete(key);
    if (!found)
        return Error{"cannot find where the C library keeps thread-specific data"};
    return *found;
}

}  // namespace connleak
