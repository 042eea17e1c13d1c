// The live view: a top-like screen that redraws in place each interval
// while stdout is a terminal. The picture comes from screen_layout.h; this
// module owns only the terminal (taking it, painting, keys, giving it back).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "report_sink.h"
#include "screen_layout.h"

namespace connleak {

struct LiveViewOptions {
    double interval_s = 2;         // shown in the title bar
    bool color = true;             // see color_wanted()
    bool pre_attach_hint = false;  // no --server: say when sockets predate the attach
};

// --no-color, or NO_COLOR set to anything but "" (https://no-color.org),
// turn colours off; bold and reverse video stay.
bool color_wanted(bool no_color_flag);

// Whether stdout is a terminal the view can drive (TERM=dumb cannot).
bool live_view_possible();

// Takes the terminal: alternate screen, keys unechoed, fatal signals and
// exit give it back. nullptr when it cannot (use the text sink then).
// Leaves SIGINT, SIGTERM and SIGWINCH to the caller (main reads them on a
// signalfd and calls finish() or resized()). One view at a time.
std::unique_ptr<ReportSink> make_live_view(const LiveViewOptions& opts);

// ---- pure pieces, exposed for tests ----

enum class Key { Quit, Sort, Pause, Up, Down, PageUp, PageDown, Top, Bottom, Redraw };

// Decodes the keys at the front of pending (bytes read from the terminal);
// an escape sequence cut short by the read stays there for the next call.
std::vector<Key> decode_keys(std::string& pending);

// The bytes that paint lines (at most height, each at most width columns)
// from the top-left corner, each cleared to its end, and clear what is below.
std::string encode_frame(const std::vector<Line>& lines, int width, int height, bool color);

}  // namespace connleak
