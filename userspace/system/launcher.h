// Launching COMMAND held at a gate, so probes are attached before its first
// instruction runs.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "result.h"

namespace connleak {

class Launcher {
public:
    // Forks a child that waits at the gate; nothing of COMMAND runs yet.
    // Fails when COMMAND cannot be found as an executable.
    static Result<Launcher> start(const std::vector<std::string>& argv);

    Launcher(Launcher&& other) noexcept;
    Launcher& operator=(Launcher&&) = delete;
    Launcher(const Launcher&) = delete;
    ~Launcher();  // a child still at the gate is killed and reaped

    pid_t pid() const { return pid_; }
    const std::string& executable() const { return executable_; }

    // Opens the gate (a byte, never end-of-file: a connleak killed before
    // this leaves the child to exit, not to run untraced) and waits until
    // exec succeeded or failed.
    Status release();

    // The command's exit status once it ended (128 + signal when killed);
    // nullopt while it runs. Never blocks.
    std::optional<int> poll_exit();

    // The command and every process under it still running: its
    // descendants by /proc's parent links, and those of `also` (traced
    // processes, which include children orphaned to init). Zombies have
    // ended and are left out.
    std::vector<pid_t> running_tree(const std::vector<uint32_t>& also);

    // Ends the command and everything under it, from the top down: SIGTERM
    // to the command, and to a process under it only once its parent is
    // gone (a gunicorn master stops its own workers, and they finish what
    // they hold first; an orphan has nobody to stop it). None to those in
    // connleak's own process group when `after_terminal_sigint` (the
    // terminal's Ctrl-C reached them already). Then SIGKILL to whatever of
    // the tree is left `grace_s` after the first SIGTERM, or as soon as
    // `wait` (called between checks, ~100 ms) returns false. `traced` gives
    // the traced processes still running. Returns how many had to be killed.
    size_t stop(double grace_s, bool after_terminal_sigint, const std::function<std::vector<uint32_t>()>& traced,
                const std::function<bool()>& wait);

private:
    // running_tree() over a /proc read already made.
    std::vector<pid_t> tree_in(const std::multimap<pid_t, pid_t>& children, const std::vector<uint32_t>& also);

    Launcher(pid_t pid, int gate_fd, int exec_fd, std::string exe)
            : pid_(pid), gate_fd_(gate_fd), exec_fd_(exec_fd), executable_(std::move(exe))
    {}

    pid_t pid_ = -1;
    int gate_fd_ = -1;  // one byte written lets the child exec; end-of-file makes it exit
    int exec_fd_ = -1;  // child's exec error (errno) arrives here; EOF on success
    std::string executable_;
    std::optional<int> exit_status_;
};

}  // namespace connleak
