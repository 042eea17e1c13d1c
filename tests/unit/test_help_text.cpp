#include <catch2/catch.hpp>

#include "help_text.h"

using namespace connleak;

TEST_CASE("roff_escape keeps minus signs, backslashes and leading dots literal")
{
    CHECK(roff_escape("--leak-after") == "\\-\\-leak\\-after");
    CHECK(roff_escape("a\\b") == "a\\eb");
    CHECK(roff_escape(".s.PGSQL.5432") == "\\&.s.PGSQL.5432");
    CHECK(roff_escape("'quoted'") == "\\&'quoted'");
    CHECK(roff_escape("plain words") == "plain words");
}

TEST_CASE("the help footer explains every word and fits 80 columns")
{
    const std::string footer = help_footer();
    for (const HelpEntry& w : help_words())
        CHECK(footer.find("\n  " + w.term + " ") != std::string::npos);
    size_t begin = 0;
    while (begin < footer.size()) {
        size_t end = footer.find('\n', begin);
        if (end == std::string::npos)
            end = footer.size();
        INFO(footer.substr(begin, end - begin));
        CHECK(end - begin <= 80);
        begin = end + 1;
    }
}

TEST_CASE("the man page has one roff line per request and every section")
{
    const std::string page =
        man_page({{"-p, --pid", "PID", "Attach to this running process"}, {"-q, --quiet", "", "No text report"}});
    CHECK(page.rfind(".TH CONNLEAK 1 ", 0) == 0);
    for (const char* s : {".SH NAME\n", ".SH SYNOPSIS\n", ".SH OPTIONS\n", ".SH EXIT STATUS\n", ".SH EXAMPLES\n",
                          ".SH WHAT THE WORDS MEAN\n", ".SH LAUNCHED COMMAND\n"})
        CHECK(page.find(s) != std::string::npos);
    CHECK(page.find(".B \\-p, \\-\\-pid \\fIPID\\fR\nAttach to this running process\n") != std::string::npos);
    CHECK(page.find(".B \\-q, \\-\\-quiet\nNo text report\n") != std::string::npos);
}
