// Where each interval's report goes to be seen: plain text blocks, JSON
// Lines, or the live terminal view. The JSON snapshot file is written apart
// from these (it can be combined with any of them).
#pragma once

#include <memory>

#include "model.h"

namespace connleak {

class ReportSink {
public:
    virtual ~ReportSink() = default;
    // Each interval.
    virtual void show(const Snapshot& snap) = 0;
    // Once, at the end (the terminal restored first where it was taken).
    virtual void finish(const Snapshot& snap) { show(snap); }
    // A file descriptor to watch for keys, or -1.
    virtual int input_fd() const { return -1; }
    // Called when input_fd() is readable; false when the user asked to quit.
    virtual bool handle_input() { return true; }
    // The terminal was resized.
    virtual void resized() {}
    // The errno of a failed write of the report (EPIPE: the reader went
    // away, as with `| head`), 0 while writes succeed.
    virtual int output_error() const { return 0; }
};

// Plain text blocks on stdout, one per interval (pipes, files, CI). With
// pre_attach_hint (no --server), the first block that has connections
// held since before the attach says so in a line (pre_attach_note).
std::unique_ptr<ReportSink> make_text_sink(bool pre_attach_hint = false);
// One JSON snapshot per line on stdout.
std::unique_ptr<ReportSink> make_json_lines_sink();
// No output (--quiet).
std::unique_ptr<ReportSink> make_null_sink();

}  // namespace connleak
