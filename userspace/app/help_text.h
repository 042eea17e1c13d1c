// The prose of `connleak --help` and of the man page, kept in one place so
// the two never disagree. Pure: rendering only, no I/O.
#pragma once

#include <string>
#include <vector>

namespace connleak {

struct HelpEntry {
    std::string term;  // a command line, a word, a status
    std::string text;  // what it means
};

// One option as the help lists it, taken from the parser itself.
struct OptionHelp {
    std::string names;  // "-p, --pid"
    std::string value;  // "PID", "" for a flag
    std::string text;
};

const std::vector<HelpEntry>& help_usage();  // the two ways to run connleak
const std::vector<HelpEntry>& help_examples();
const std::vector<HelpEntry>& help_words();  // the report's words (README "What the words mean")
const std::vector<HelpEntry>& help_exit_status();
const std::string& help_launched_command();  // what becomes of COMMAND when connleak ends

// What --help prints after the options: examples, words, exit status.
std::string help_footer();

// The man page, connleak(1), in roff.
std::string man_page(const std::vector<OptionHelp>& options);

// Text made safe for roff: backslashes, minus signs, a leading dot or quote.
std::string roff_escape(const std::string& text);

}  // namespace connleak
