// What the live view shows, as lines of styled text that fit a given
// terminal size. Pure (no I/O, no escape codes): the terminal code in
// live_view.cpp only paints these lines, and tests read them as text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model.h"
#include "trends.h"

namespace connleak {

// Meaning, not colour: live_view.cpp maps each to attributes (and to no
// colour under --no-color / NO_COLOR).
enum class Style : uint8_t {
    Plain,
    Strong,   // numbers in the header, process headings
    Muted,    // secondary notes ("exited", "+3 more")
    Heading,  // column headings
    Bar,      // title and key bars
    BarWarn,  // the bar while paused
    Leak,     // leaking: red
    Healthy,  // no leak, not climbing: green
    Warn,     // climbing but not (yet) a leak, dropped events: yellow
};

struct Span {
    std::string text;
    Style style = Style::Plain;
};
using Line = std::vector<Span>;

// Columns a string takes: one per UTF-8 code point (no wide glyphs here).
size_t text_width(std::string_view s);
size_t line_width(const Line& line);
std::string line_text(const Line& line);  // without styles, for tests
// Cut to width columns; a trailing '~' marks the cut.
std::string clip(std::string_view s, size_t width);
// Names the target chose (comm, symbols) made safe to print: escaped as
// \xNN like the text report does (safe_text.h), C1 controls too, so a
// process name cannot drive the terminal.
std::string printable(std::string_view s);

// Compact numbers for fixed-width cells: 1234567 in 5 columns is "1.2M".
std::string format_count(uint64_t v, size_t width);

enum class SortKey { Leaks, Active, Acquired, AvgHold, State, LastUser };
SortKey next_sort(SortKey k);
const char* sort_name(SortKey k);

// What the person chose with keys.
struct ViewState {
    SortKey sort = SortKey::Leaks;
    int scroll = 0;  // first body line shown
    bool paused = false;
};

struct LayoutParams {
    int width = 80, height = 24;
    double interval_s = 2;
    size_t oldest_conns = 3;       // live connections listed per process at least; more while the screen has room
    bool waiting = false;          // no report yet: say so instead of zeros
    bool pre_attach_hint = false;  // no --server: a line when sockets predate the attach
};

struct Screen {
    std::vector<Line> lines;  // height lines (the key bar last), each at most width columns
    int scroll = 0;           // scroll actually used (clamped)
    int max_scroll = 0;
    int page = 0;  // body lines on screen
};

// Fixed header (title, totals), the scrolling body (per process: heading,
// site table, its oldest live connections, as many as the screen has room
// for once every process's sites are on it; then the live connections that
// did not fit, by process), fixed key bar at the bottom. Exited processes
// that never touched libpq are left out, named in one line.
Screen layout_screen(const Snapshot& snap, const Trends& trends, const ViewState& view, const LayoutParams& params);

}  // namespace connleak
