// Raw termios + ANSI escape sequences, not ncurses, because:
// - main owns SIGINT, SIGTERM and SIGWINCH (blocked, read on a signalfd);
//   ncurses installs its own handlers for those and for SIGTSTP.
// - Giving the terminal back from a crash handler must be async-signal-safe:
//   here that is one write() of a fixed string and one tcsetattr(); endwin()
//   is neither.
// - screen_layout already produces whole lines that fit the width, so the
//   whole job is "paint these lines": a dozen escape sequences every
//   terminal of the last 30 years (xterm, VTE, tmux, screen, the Linux
//   console, Windows Terminal) understands. TERM=dumb gets the text sink.
#include "live_view.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iterator>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <utility>

#include "text_report.h"
#include "trends.h"

namespace connleak {
namespace {

// Alternate screen (the shell's screen comes back intact), cursor hidden,
// no autowrap (a full-width line must not scroll the screen).
constexpr char kEnter[] = "\x1b[?1049h\x1b[?25l\x1b[?7l";
constexpr char kLeave[] = "\x1b[0m\x1b[?7h\x1b[?25h\x1b[?1049l";

// What the exit and signal paths need to give the terminal back: plain
// data, used only with async-signal-safe calls.
struct TerminalState {
    int out_fd = -1;  // where escape sequences go; -1 while no view exists
    int tty_fd = -1;  // whose termios were changed; -1 none
    termios saved{}, raw{};
    volatile sig_atomic_t taken = 0;
};
TerminalState g_term;

void write_all(int fd, const char* p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {  // someone made the tty non-blocking
            pollfd pfd = {fd, POLLOUT, 0};
            poll(&pfd, 1, 100);
            continue;
        }
        if (w <= 0)
            return;  // the terminal is gone: nothing left to show
        p += w;
        n -= static_cast<size_t>(w);
    }
}

void take_terminal()
{
    if (g_term.tty_fd >= 0)
        tcsetattr(g_term.tty_fd, TCSANOW, &g_term.raw);
    write_all(g_term.out_fd, kEnter, sizeof(kEnter) - 1);
    g_term.taken = 1;
}

// Idempotent and async-signal-safe: called from the destructor, finish(),
// atexit and the fatal-signal handler, whichever comes first.
void give_back_terminal()
{
    if (!g_term.taken)
        return;
    g_term.taken = 0;
    write_all(g_term.out_fd, kLeave, sizeof(kLeave) - 1);
    if (g_term.tty_fd >= 0)
        tcsetattr(g_term.tty_fd, TCSANOW, &g_term.saved);
}

// ---- signals ----------------------------------------------------------

// Signals that would leave the terminal raw and on the alternate screen.
// Not SIGINT/SIGTERM/SIGWINCH: main reads those from its signalfd.
constexpr int kFatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGQUIT, SIGHUP};
struct sigaction g_previous[std::size(kFatal) + 1];  // + SIGTSTP
bool g_installed[std::size(kFatal) + 1];

void set_handler(int sig, void (*handler)(int))
{
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
}

// Terminal back, then die of the same signal as if never caught (core dump
// and exit status as usual): the signal stays blocked until we return.
void on_fatal(int sig)
{
    give_back_terminal();
    set_handler(sig, SIG_DFL);
    raise(sig);
}

void on_stop(int)
{
    const int saved_errno = errno;
    const bool was_taken = g_term.taken;
    give_back_terminal();
    set_handler(SIGTSTP, SIG_DFL);
    raise(SIGTSTP);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTSTP);
    sigprocmask(SIG_UNBLOCK, &s, nullptr);  // stops here until SIGCONT (fg)
    set_handler(SIGTSTP, on_stop);
    if (was_taken) {
        take_terminal();
        raise(SIGWINCH);  // main's signalfd sees it and asks for a full redraw
    }
    errno = saved_errno;
}

// A signal the process ignores (nohup, no job control) stays ignored.
void install_handlers()
{
    size_t i = 0;
    auto install = [&](int sig, void (*handler)(int)) {
        g_installed[i] = false;
        if (sigaction(sig, nullptr, &g_previous[i]) == 0 && g_previous[i].sa_handler != SIG_IGN) {
            set_handler(sig, handler);
            g_installed[i] = true;
        }
        i++;
    };
    for (int sig : kFatal)
        install(sig, on_fatal);
    install(SIGTSTP, on_stop);
}

void remove_handlers()
{
    size_t i = 0;
    for (int sig : kFatal) {
        if (g_installed[i])
            sigaction(sig, &g_previous[i], nullptr);
        i++;
    }
    if (g_installed[i])
        sigaction(SIGTSTP, &g_previous[i], nullptr);
}

// ---- painting ---------------------------------------------------------

const char* sgr(Style s, bool color)
{
    switch (s) {
    case Style::Plain:
        return "";
    case Style::Strong:
        return "1";
    case Style::Muted:
        return "2";
    case Style::Heading:
        return "1";
    case Style::Bar:
        return "7";
    case Style::BarWarn:
        return color ? "30;43" : "1;7";
    case Style::Leak:
        return color ? "1;31" : "1";
    case Style::Healthy:
        return color ? "32" : "";
    case Style::Warn:
        return color ? "33" : "";
    }
    return "";
}

std::pair<int, int> terminal_size(int fd)
{
    winsize ws{};
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0)
        return {ws.ws_col, ws.ws_row};
    return {80, 24};
}

// ---- the sink ---------------------------------------------------------

class LiveView final : public ReportSink {
public:
    LiveView(const LiveViewOptions& opts, int in_fd, bool own_in) : opts_(opts), in_fd_(in_fd), own_in_(own_in)
    {
        draw(true);  // "waiting for the first report" until the first interval
    }

    ~LiveView() override
    {
        give_back_terminal();
        remove_handlers();
        stop_reading();
        g_term.out_fd = g_term.tty_fd = -1;  // another view may be made now
    }

    void show(const Snapshot& snap) override
    {
        trends_.record(snap);  // every report counts, paused or not
        latest_ = snap;
        waiting_ = false;
        if (!view_.paused) {
            shown_ = latest_;
            shown_trends_ = trends_;
            draw(false);
        }
    }

    // The last report goes to the normal screen, where it stays readable
    // after connleak has exited.
    void finish(const Snapshot& snap) override
    {
        give_back_terminal();
        std::string text = render_text_report(snap);
        // The screen's line under the totals, kept in the report that stays.
        if (opts_.pre_attach_hint)
            add_pre_attach_note(text, snap);
        std::printf("%s\n", text.c_str());
        std::fflush(stdout);
    }

    int input_fd() const override { return in_fd_; }

    bool handle_input() override
    {
        char buf[64];
        ssize_t n = read(in_fd_, buf, sizeof(buf));
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return true;
        if (n <= 0) {  // hung up: keep showing, stop listening
            stop_reading();
            return true;
        }
        pending_.append(buf, static_cast<size_t>(n));
        bool clear = false;
        for (Key k : decode_keys(pending_)) {
            switch (k) {
            case Key::Quit:
                return false;
            case Key::Sort:
                view_.sort = next_sort(view_.sort);
                view_.scroll = 0;  // the worst rows are at the top again
                break;
            case Key::Pause:
                view_.paused = !view_.paused;
                if (!view_.paused) {  // catch up with what arrived meanwhile
                    shown_ = latest_;
                    shown_trends_ = trends_;
                }
                break;
            case Key::Up:
                view_.scroll -= 1;
                break;
            case Key::Down:
                view_.scroll += 1;
                break;
            case Key::PageUp:
                view_.scroll -= std::max(1, page_ - 1);
                break;
            case Key::PageDown:
                view_.scroll += std::max(1, page_ - 1);
                break;
            case Key::Top:
                view_.scroll = 0;
                break;
            case Key::Bottom:
                view_.scroll = max_scroll_;
                break;
            case Key::Redraw:
                clear = true;
                break;
            }
        }
        draw(clear);
        return true;
    }

    // Terminals rewrap or keep stale cells on resize: repaint from blank.
    void resized() override { draw(true); }

private:
    void draw(bool clear)
    {
        if (!g_term.taken)
            return;
        auto [width, height] = terminal_size(g_term.out_fd);
        LayoutParams params;
        params.width = width;
        params.height = height;
        params.interval_s = opts_.interval_s;
        params.waiting = waiting_;
        params.pre_attach_hint = opts_.pre_attach_hint;
        Screen screen = layout_screen(shown_, shown_trends_, view_, params);
        view_.scroll = screen.scroll;
        page_ = screen.page;
        max_scroll_ = screen.max_scroll;
        std::string frame = clear ? "\x1b[2J" : "";
        frame += encode_frame(screen.lines, width, height, opts_.color);
        write_all(g_term.out_fd, frame.data(), frame.size());
    }

    void stop_reading()
    {
        if (own_in_ && in_fd_ >= 0)
            close(in_fd_);
        in_fd_ = -1;
    }

    LiveViewOptions opts_;
    int in_fd_;
    bool own_in_;
    std::string pending_;  // key bytes not decoded yet
    ViewState view_;
    int page_ = 0, max_scroll_ = 0;
    bool waiting_ = true;
    Trends trends_;
    // What is on screen and what arrived last differ only while paused.
    Snapshot shown_, latest_;
    Trends shown_trends_;
};

}  // namespace

bool color_wanted(bool no_color_flag)
{
    const char* env = std::getenv("NO_COLOR");
    return !no_color_flag && !(env && *env);
}

bool live_view_possible()
{
    const char* term = std::getenv("TERM");
    return isatty(STDOUT_FILENO) && term && *term && std::strcmp(term, "dumb") != 0;
}

std::unique_ptr<ReportSink> make_live_view(const LiveViewOptions& opts)
{
    if (g_term.out_fd >= 0 || !isatty(STDOUT_FILENO))
        return nullptr;
    // Keys from stdin when it is the terminal, else from the controlling
    // terminal (connleak ... < file); no keys at all is still a usable view.
    int in_fd = STDIN_FILENO;
    bool own_in = false;
    if (!isatty(in_fd)) {
        in_fd = open("/dev/tty", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        own_in = in_fd >= 0;
    }
    g_term.out_fd = STDOUT_FILENO;
    if (in_fd >= 0 && tcgetattr(in_fd, &g_term.saved) == 0) {
        g_term.tty_fd = in_fd;
        g_term.raw = g_term.saved;
        // Keys one at a time, unechoed. ISIG stays: Ctrl-C is still SIGINT,
        // which main turns into an orderly finish().
        g_term.raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
        g_term.raw.c_cc[VMIN] = 1;
        g_term.raw.c_cc[VTIME] = 0;
    }
    static const bool at_exit = std::atexit(give_back_terminal) == 0;
    (void)at_exit;
    std::fflush(stdout);
    install_handlers();
    take_terminal();
    return std::make_unique<LiveView>(opts, in_fd, own_in);
}

std::vector<Key> decode_keys(std::string& pending)
{
    std::vector<Key> keys;
    size_t i = 0;
    while (i < pending.size()) {
        const char c = pending[i];
        if (c != '\x1b') {
            switch (c) {
            case 'q':
            case 'Q':
                keys.push_back(Key::Quit);
                break;
            case 's':
            case 'S':
                keys.push_back(Key::Sort);
                break;
            case 'p':
            case 'P':
                keys.push_back(Key::Pause);
                break;
            case 'k':
                keys.push_back(Key::Up);
                break;
            case 'j':
                keys.push_back(Key::Down);
                break;
            case ' ':
                keys.push_back(Key::PageDown);
                break;
            case 'b':
                keys.push_back(Key::PageUp);
                break;
            case 'g':
                keys.push_back(Key::Top);
                break;
            case 'G':
                keys.push_back(Key::Bottom);
                break;
            case '\x0c':
                keys.push_back(Key::Redraw);
                break;  // Ctrl-L
            default:
                break;  // not ours: ignored
            }
            i++;
            continue;
        }
        // ESC [ params final, or ESC O final (arrows in application mode).
        if (i + 1 >= pending.size())
            break;  // the rest may come with the next read
        if (pending[i + 1] != '[' && pending[i + 1] != 'O') {
            i++;  // a lone ESC: nothing bound to it
            continue;
        }
        size_t end = i + 2;
        while (end < pending.size() && (pending[end] < 0x40 || pending[end] > 0x7e))
            end++;
        if (end >= pending.size())
            break;
        const std::string seq = pending.substr(i + 2, end + 1 - (i + 2));
        if (seq == "A")
            keys.push_back(Key::Up);
        else if (seq == "B")
            keys.push_back(Key::Down);
        else if (seq == "5~")
            keys.push_back(Key::PageUp);
        else if (seq == "6~")
            keys.push_back(Key::PageDown);
        else if (seq == "H" || seq == "1~" || seq == "7~")
            keys.push_back(Key::Top);
        else if (seq == "F" || seq == "4~" || seq == "8~")
            keys.push_back(Key::Bottom);
        i = end + 1;
    }
    pending.erase(0, i);
    if (pending.size() > 32)  // an endless sequence: not a key
        pending.clear();
    return keys;
}

// Erasing from the cursor includes the cursor's cell, and after a write to
// the last column the cursor stays on it: a full-width line must not be
// followed by an erase, or its last character goes.
std::string encode_frame(const std::vector<Line>& lines, int width, int height, bool color)
{
    std::string out;
    const size_t rows = std::min(lines.size(), static_cast<size_t>(std::max(height, 0)));
    for (size_t row = 0; row < rows; row++) {
        out += "\x1b[" + std::to_string(row + 1) + ";1H";
        for (const Span& s : lines[row]) {
            const char* attrs = sgr(s.style, color);
            if (*attrs)
                out += std::string("\x1b[") + attrs + "m" + s.text + "\x1b[0m";
            else
                out += s.text;
        }
        if (static_cast<int>(line_width(lines[row])) < width)
            out += "\x1b[K";
    }
    if (static_cast<int>(rows) < height)
        out += "\x1b[" + std::to_string(rows + 1) + ";1H\x1b[J";
    return out;
}

}  // namespace connleak
