// Python frames: line tables, the version table, the merge into native
// stacks, the site among them, and labels that keep a process's rows apart.
#include <catch2/catch.hpp>

#include <regex>

#include "python_code.h"
#include "python_frames.h"
#include "python_layout.h"
#include "stack_table.h"

using namespace connleak;

namespace {

// CPython 3.11's table for (firstlineno 1):
//   def f(x):
//       a = 1
//       if x:
//           return a + 2
//       return 7
const std::vector<uint8_t> kTable = {128, 0,  216, 8,   9,  128, 65,  216, 7,  8,   240, 0,  1,   5, 21,
                                     216, 15, 16,  144, 49, 137, 117, 136, 12, 216, 11,  12, 136, 49};

std::vector<std::regex> regexes(const std::vector<std::string>& v)
{
    std::vector<std::regex> out;
    for (const std::string& s : v)
        out.emplace_back(s);
    return out;
}

}  // namespace

TEST_CASE("python_line decodes a 3.11 location table")
{
    // Instructions in code units (dis offsets / 2) and their lines.
    const std::vector<std::pair<uint32_t, int>> expect = {{0, 1}, {1, 2}, {2, 2}, {3, 3},  {4, 3}, {5, 4},
                                                          {6, 4}, {7, 4}, {9, 4}, {10, 5}, {11, 5}};
    for (auto [instr, line] : expect) {
        INFO("instr " << instr);
        CHECK(python_line(kTable.data(), kTable.size(), 1, instr) == line);
    }
    CHECK(python_line(kTable.data(), kTable.size(), 1, 12) == -1);  // past the end
    // A table cut short (the kernel sends at most 1 KiB) knows the lines it has.
    CHECK(python_line(kTable.data(), 10, 1, 3) == 3);
    CHECK(python_line(kTable.data(), 10, 1, 9) == -1);
    // Long form (code 14) and no location (15).
    const uint8_t long_form[] = {0xf0 | 1, 6 /* +3 */, 0, 1, 2, 0xf8 | 0};
    CHECK(python_line(long_form, sizeof long_form, 10, 1) == 13);
    CHECK(python_line(long_form, sizeof long_form, 10, 2) == -1);
    const uint8_t negative[] = {0xe8 | 0, 5 /* -2 */};
    CHECK(python_line(negative, sizeof negative, 10, 0) == 8);
}

TEST_CASE("python frames are named qualname (file:line)")
{
    PythonCode c;
    c.qualname = "Repo.get";
    c.filename = "/srv/app/repo.py";
    c.firstlineno = 1;
    c.linetable = kTable;
    CHECK(python_frame_name(c, 10) == "Repo.get (/srv/app/repo.py:5)");
    CHECK(python_frame_name(c, 40) == "Repo.get (/srv/app/repo.py)");

    python_code_event e{};
    e.kind = EVENT_PY_CODE;
    e.tgid = 7;
    e.code = 0x1000;
    e.generation = 2;
    e.firstlineno = 1;
    std::snprintf(e.qualname, sizeof e.qualname, "%s", "f");
    std::snprintf(e.filename, sizeof e.filename, "%s", "a.py");
    e.linetable_len = static_cast<uint32_t>(kTable.size());
    std::copy(kTable.begin(), kTable.end(), e.linetable);
    PythonCodes codes;
    codes.add(e);
    CHECK(codes.frame_name(7, 2, 0x1000, 3) == "f (a.py:3)");
    CHECK(codes.frame_name(7, 3, 0x1000, 3).empty());  // another image (exec'ed since)
    CHECK(codes.frame_name(8, 2, 0x1000, 3).empty());
    codes.forget(7);
    CHECK(codes.size() == 0);
}

TEST_CASE("the version table: 3.11 is known and tested, others are not guessed")
{
    const PythonVersionLayout* v = python_layout_for(0x030b02f0);
    REQUIRE(v);
    CHECK(v->tested);
    CHECK(v->kernel.frame_is_entry == 68);
    CHECK(v->kernel.code_adaptive == 184);
    CHECK(python_layout_for(0x030a00f0) == nullptr);
    CHECK(python_version_string(0x030b02f0) == "3.11.2");
}

TEST_CASE("the C library's thread-specific data is found in connleak's own thread")
{
    auto off = own_tsd_key0_offset();
    REQUIRE(off);
    CHECK(off.value() > 0);
    CHECK(off.value() < 4096);
}

TEST_CASE("each evaluation frame stands for the Python frames it ran")
{
    const std::vector<std::string> native = {"PQconnectdb+0x1 (libpq.so.5)",
                                             "_psycopg.so+0x16998",
                                             "_PyEval_EvalFrameDefault+0x10 (python3.11)",
                                             "PyObject_Call+0x1c4 (python3.11)",
                                             "_PyEval_EvalFrameDefault+0x20 (python3.11)",
                                             "__libc_start_call_main+0x1 (libc.so.6)"};
    const std::vector<NamedPythonFrame> py = {{"connect (psycopg2/__init__.py:122)", false},
                                              {"get_conn (db.py:6)", false},
                                              {"audit (app.py:31)", true},
                                              {"handle (worker.py:9)", false},
                                              {"<module> (main.py:1)", true}};
    CHECK(merge_python_frames(native, py) ==
          std::vector<std::string>{"PQconnectdb+0x1 (libpq.so.5)", "_psycopg.so+0x16998",
                                   "connect (psycopg2/__init__.py:122)", "get_conn (db.py:6)", "audit (app.py:31)",
                                   "PyObject_Call+0x1c4 (python3.11)", "handle (worker.py:9)", "<module> (main.py:1)",
                                   "__libc_start_call_main+0x1 (libc.so.6)"});
    // The native stack cut short: the outer Python frames still follow.
    CHECK(merge_python_frames({native[0], native[1], native[2]}, py).size() == 7);
    // More evaluation frames than Python frames: the extra ones stay.
    CHECK(merge_python_frames(native, {py[0]}).at(4) == "_PyEval_EvalFrameDefault+0x20 (python3.11)");
}

TEST_CASE("the site of a Python stack is the innermost application frame")
{
    std::vector<std::string> skip = StackOptions::default_site_skip();
    for (const std::string& s : python_site_skip())
        skip.push_back(s);
    const auto re = regexes(skip);
    const std::vector<std::string> psycopg2 = {
        "PQconnectdb+0x1 (libpq.so.5)",
        "_psycopg.cpython-311-x86_64-linux-gnu.so+0x16998",
        "_PyObject_MakeTpCall+0x1c5 (python3.11)",
        "python3.11+0x147b96",
        "connect (/usr/lib/python3/dist-packages/psycopg2/__init__.py:122)",
        "getconn (/usr/lib/python3/dist-packages/psycopg2/pool.py:90)",
        "_connect (/usr/lib/python3/dist-packages/sqlalchemy/engine/default.py:598)",
        "__call__ (/usr/lib/python3.11/threading.py:12)",
        "<lambda> (<frozen importlib._bootstrap>:241)",
        "ffi_call+0x1 (libffi.so.8)",
        "libffi.so.8.1.2+0x6f7a",
        "get_conn (/srv/app/db.py:6)",
        "audit (/srv/app/routes.py:31)"};
    CHECK(StackTable::site_index(psycopg2, re) == 11);
    // psycopg 3 and a venv's site-packages.
    const std::vector<std::string> psycopg3 = {"connect (/venv/lib/python3.11/site-packages/psycopg/connection.py:728)",
                                               "connect (/venv/lib/python3.11/site-packages/psycopg_pool/pool.py:1)",
                                               "leak (/venv/app/leak.py:9)"};
    CHECK(StackTable::site_index(psycopg3, re) == 2);
    // --site-skip matches Python frames too.
    auto more = skip;
    more.push_back(R"(^get_conn \()");
    CHECK(StackTable::site_index(psycopg2, regexes(more)) == 12);
}

TEST_CASE("rows reaching the same frame say where they part")
{
    const std::vector<std::string> audit = {"glue", "get_conn (db.py:6)", "audit_log (routes.py:31)", "wsgi (w.py:1)"};
    const std::vector<std::string> report = {"glue", "get_conn (db.py:6)", "report (routes.py:40)", "wsgi (w.py:1)"};
    const std::vector<std::string> direct = {"glue", "direct (routes.py:50)", "wsgi (w.py:1)"};
    CHECK(site_labels({{&audit, 1}, {&report, 1}, {&direct, 1}}) ==
          std::vector<std::string>{"audit_log (routes.py:31) \u2192 get_conn (db.py:6)",
                                   "report (routes.py:40) \u2192 get_conn (db.py:6)", "direct (routes.py:50)"});
    // Alone, the frame itself.
    CHECK(site_labels({{&audit, 1}}) == std::vector<std::string>{"get_conn (db.py:6)"});
    // Parting further out: the outermost parting point is named.
    const std::vector<std::string> a = {"f (x.py:1)", "g (x.py:2)", "h (x.py:3)"};
    const std::vector<std::string> b = {"f (x.py:1)", "g (x.py:2)", "k (x.py:4)"};
    CHECK(site_labels({{&a, 0}, {&b, 0}}) ==
          std::vector<std::string>{"h (x.py:3) \u2192 f (x.py:1)", "k (x.py:4) \u2192 f (x.py:1)"});
    // Identical from the site out: numbered, never alike.
    const auto same = site_labels({{&a, 0}, {&a, 0}});
    CHECK(same[0] != same[1]);
}
