#include "report_sink.h"

#include <cerrno>
#include <cstdio>
#include <string>

#include "json_output.h"
#include "text_report.h"

namespace connleak {
namespace {

// Lines on stdout; the first failed write is kept (and nothing more is
// written after it).
class StdoutSink : public ReportSink {
public:
    int output_error() const override { return error_; }

protected:
    void write_line(const std::string& text)
    {
        if (error_)
            return;
        errno = 0;
        if (std::printf("%s\n", text.c_str()) < 0 || std::fflush(stdout) != 0)
            error_ = errno ? errno : EIO;
    }

private:
    int error_ = 0;
};

class TextSink : public StdoutSink {
public:
    explicit TextSink(bool pre_attach_hint) : hint_pending_(pre_attach_hint) {}

    void show(const Snapshot& snap) override { write_report(snap, &printed_); }

    // The last report: every site's stack again, to be read on its own.
    void finish(const Snapshot& snap) override { write_report(snap, nullptr); }

private:
    void write_report(const Snapshot& snap, StacksPrinted* printed)
    {
        std::string text = render_text_report(snap, printed);
        // Once: the same line every interval would be read past.
        if (hint_pending_ && add_pre_attach_note(text, snap))
            hint_pending_ = false;
        write_line(text);
    }

    bool hint_pending_;
    StacksPrinted printed_;  // each site's stack printed once (again when it changes)
};

class JsonLinesSink : public StdoutSink {
public:
    void show(const Snapshot& snap) override { write_line(snapshot_to_json(snap).dump()); }
};

class NullSink : public ReportSink {
public:
    void show(const Snapshot&) override {}
};

}  // namespace

std::unique_ptr<ReportSink> make_text_sink(bool pre_attach_hint)
{
    return std::make_unique<TextSink>(pre_attach_hint);
}
std::unique_ptr<ReportSink> make_json_lines_sink()
{
    return std::make_unique<JsonLinesSink>();
}
std::unique_ptr<ReportSink> make_null_sink()
{
    return std::make_unique<NullSink>();
}

}  // namespace connleak
