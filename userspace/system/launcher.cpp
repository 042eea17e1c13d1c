#include "launcher.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process_tree.h"

namespace connleak {
namespace {

bool is_executable_file(const std::string& path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// The file execvp would run, found the same way, so a typo is reported
// before anything is forked.
std::optional<std::string> find_in_path(const std::string& name)
{
    if (name.find('/') != std::string::npos)
        return is_executable_file(name) ? std::optional<std::string>(name) : std::nullopt;
    const char* env = std::getenv("PATH");
    std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
    size_t begin = 0;
    while (begin <= path.size()) {
        size_t end = path.find(':', begin);
        if (end == std::string::npos)
            end = path.size();
        std::string dir = path.substr(begin, end - begin);
        std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
        if (is_executable_file(candidate))
            return candidate;
        begin = end + 1;
    }
    return std::nullopt;
}

int status_to_exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

// Parent of every running process, from /proc/PID/stat (zombies left out:
// they have ended, only their status waits to be collected).
std::multimap<pid_t, pid_t> running_children()
{
    std::multimap<pid_t, pid_t> children;
    DIR* proc = opendir("/proc");
    if (!proc)
        return children;
    while (dirent* e = readdir(proc)) {
        char* end;
        const long pid = std::strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
        std::string stat;
        std::getline(f, stat);
        const size_t paren = stat.rfind(')');  // comm may hold spaces and parentheses
        if (paren == std::string::npos)
            continue;
        std::istringstream rest(stat.substr(paren + 1));
        char state = 0;
        pid_t ppid = 0;
        if (rest >> state >> ppid && state != 'Z')
            children.emplace(ppid, static_cast<pid_t>(pid));
    }
    closedir(proc);
    return children;
}

bool is_running(pid_t pid)
{
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(f, stat);
    const size_t paren = stat.rfind(')');
    return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

double monotonic_s()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

// The byte that opens the gate. End-of-file is not "go": it is what the
// child reads when connleak died before the probes were in, and then the
// command must never run untraced.
constexpr char kGo = 'g';

[[noreturn]] void run_child(int gate_read, int exec_write, const std::string& exe, const std::vector<std::string>& argv)
{
    // The parent blocks signals to wait for them and ignores SIGPIPE; the
    // command must inherit neither.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    char byte = 0;
    ssize_t n;
    while ((n = read(gate_read, &byte, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1 || byte != kGo)
        _exit(127);
    close(gate_read);
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(exe.c_str(), args.data());
    int err = errno;
    (void)!write(exec_write, &err, sizeof(err));
    _exit(127);
}

}  // namespace

Result<Launcher> Launcher::start(const std::vector<std::string>& argv)
{
    auto exe = find_in_path(argv.at(0));
    if (!exe)
        return Error{"cannot run " + argv[0] + ": no such executable (in PATH)"};
    int gate[2], exec_pipe[2];
    if (pipe2(gate, O_CLOEXEC) != 0)
        return Error{std::string("pipe: ") + std::strerror(errno)};
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        close(gate[0]);
        close(gate[1]);
        return Error{std::string("pipe: ") + std::strerror(errno)};
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        for (int fd : {gate[0], gate[1], exec_pipe[0], exec_pipe[1]})
            close(fd);
        return Error{std::string("fork: ") + std::strerror(err)};
    }
    if (pid == 0) {
        close(gate[1]);
        close(exec_pipe[0]);
        run_child(gate[0], exec_pipe[1], *exe, argv);
    }
    close(gate[0]);
    close(exec_pipe[1]);
    return Launcher(pid, gate[1], exec_pipe[0], *exe);
}

Launcher::Launcher(Launcher&& o) noexcept
        : pid_(o.pid_), gate_fd_(o.gate_fd_), exec_fd_(o.exec_fd_), executable_(std::move(o.executable_)),
          exit_status_(o.exit_status_)
{
    o.pid_ = -1;
    o.gate_fd_ = o.exec_fd_ = -1;
}

Launcher::~Launcher()
{
    if (gate_fd_ >= 0 && pid_ > 0) {  // never released: the command must not run untraced
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    if (gate_fd_ >= 0)
        close(gate_fd_);
    if (exec_fd_ >= 0)
        close(exec_fd_);
}

Status Launcher::release()
{
    ssize_t w;
    while ((w = write(gate_fd_, &kGo, 1)) < 0 && errno == EINTR) {
    }
    const int write_err = errno;
    close(gate_fd_);
    gate_fd_ = -1;
    if (w != 1)  // the child is gone (EPIPE): nothing of the command ran
        return Error{"cannot run " + executable_ + ": it ended at the gate (" + std::strerror(write_err) + ")"};
    int err = 0;
    ssize_t n;
    while ((n = read(exec_fd_, &err, sizeof(err))) < 0 && errno == EINTR) {
    }
    close(exec_fd_);
    exec_fd_ = -1;
    if (n == static_cast<ssize_t>(sizeof(err)))
        return Error{"cannot run " + executable_ + ": " + std::strerror(err)};
    return Ok{};
}

std::optional<int> Launcher::poll_exit()
{
    if (exit_status_ || pid_ <= 0)
        return exit_status_;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_)
        exit_status_ = status_to_exit_code(status);
    return exit_status_;
}

std::vector<pid_t> Launcher::running_tree(const std::vector<uint32_t>& also)
{
    return tree_in(running_children(), also);
}

std::vector<pid_t> Launcher::tree_in(const std::multimap<pid_t, pid_t>& children, const std::vector<uint32_t>& also)
{
    poll_exit();  // a command that ended is collected, not counted as running
    std::set<pid_t> tree;
    std::vector<pid_t> todo;
    if (!exit_status_ && pid_ > 0)
        todo.push_back(pid_);
    for (uint32_t pid : also)
        if (static_cast<pid_t>(pid) != getpid() && is_running(static_cast<pid_t>(pid)))
            todo.push_back(static_cast<pid_t>(pid));
    while (!todo.empty()) {
        const pid_t pid = todo.back();
        todo.pop_back();
        if (!tree.insert(pid).second)
            continue;
        auto [begin, end] = children.equal_range(pid);
        for (auto it = begin; it != end; ++it)
            todo.push_back(it->second);
    }
    return {tree.begin(), tree.end()};
}

size_t Launcher::stop(double grace_s, bool after_terminal_sigint, const std::function<std::vector<uint32_t>()>& traced,
                      const std::function<bool()>& wait)
{
    const pid_t own_group = getpgrp();
    std::set<pid_t> told;  // each process is sent SIGTERM once
    // Every process of the tree seen so far, still running: one whose
    // parent exited is re-parented out of the tree (to init), and one not
    // traced (--no-follow, a full process map) would be found by no other
    // way, and be left running.
    std::set<pid_t> seen;
    auto roots = [&] {
        std::vector<uint32_t> r = traced();
        for (auto it = seen.begin(); it != seen.end();)
            if (is_running(*it)) {
                r.push_back(static_cast<uint32_t>(*it));
                ++it;
            } else {
                it = seen.erase(it);  // gone: its pid may come back as someone else's
            }
        return r;
    };
    // The tree now; SIGTERM to its tops not yet told. All at once, the
    // workers of a pre-forking server died by the signal with their
    // handles open while their master was still telling them to finish.
    auto tell_tops = [&] {
        const std::multimap<pid_t, pid_t> children = running_children();
        const std::vector<pid_t> tree = tree_in(children, roots());
        seen.insert(tree.begin(), tree.end());
        std::map<uint32_t, uint32_t> parents;
        for (const auto& [parent, child] : children)
            parents[static_cast<uint32_t>(child)] = static_cast<uint32_t>(parent);
        for (uint32_t top : tree_tops(parents, std::vector<uint32_t>(tree.begin(), tree.end()))) {
            const pid_t pid = static_cast<pid_t>(top);
            if (told.insert(pid).second && (!after_terminal_sigint || getpgid(pid) != own_group))
                kill(pid, SIGTERM);
        }
        return !tree.empty();
    };
    const double deadline = monotonic_s() + grace_s;
    while (tell_tops() && monotonic_s() < deadline)
        if (!wait())
            break;
    // SIGKILL until none is left: one forked between the list and the kill
    // is found on the next round.
    size_t killed = 0;
    for (int round = 0; round < 50; round++) {
        const std::vector<pid_t> left = running_tree(roots());
        seen.insert(left.begin(), left.end());
        if (left.empty())
            break;
        for (pid_t pid : left)
            killed += kill(pid, SIGKILL) == 0 && round == 0;
        wait();
    }
    return killed;
}

}  // namespace connleak
