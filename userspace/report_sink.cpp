#include "report_sink.h"

#include <cstdio>

#include "json_output.h"
#include "text_report.h"

namespace connleak {
namespace {

class TextSink : public ReportSink {
public:
    void show(const Snapshot& snap) override
    {
        std::printf("%s\n", render_text_report(snap).c_str());
        std::fflush(stdout);
    }
};

class JsonLinesSink : public ReportSink {
public:
    void show(const Snapshot& snap) override
    {
        std::printf("%s\n", snapshot_to_json(snap).dump().c_str());
        std::fflush(stdout);
    }
};

class NullSink : public ReportSink {
public:
    void show(const Snapshot&) override {}
};

}  // namespace

std::unique_ptr<ReportSink> make_text_sink() { return std::make_unique<TextSink>(); }
std::unique_ptr<ReportSink> make_json_lines_sink() { return std::make_unique<JsonLinesSink>(); }
std::unique_ptr<ReportSink> make_null_sink() { return std::make_unique<NullSink>(); }

}  // namespace connleak
