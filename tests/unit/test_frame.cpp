// Frame: the one spelling of every kind of frame.
#include <catch2/catch.hpp>

#include "frame.h"

using connleak::format_frame;
using connleak::Frame;
using connleak::InterpreterFrame;
using connleak::NativeFrame;

TEST_CASE("a native frame names its function, module and line", "[frame]")
{
    NativeFrame f;
    f.address = 0x7f0012345678;
    f.module = "app";
    f.file_offset = 0x1234;
    f.function = "repo_a";
    f.function_offset = 0x1c;
    f.source = "repo.c:22";
    CHECK(format_frame(f) == "repo_a+0x1c (app) repo.c:22");
    CHECK(format_frame(f, false) == "repo_a+0x1c (app)");
    f.source.clear();
    CHECK(format_frame(f) == "repo_a+0x1c (app)");
    // No symbol: the file offset, however much else is known.
    f.function.clear();
    f.source = "repo.c:22";
    CHECK(format_frame(f) == "app+0x1234");
    // No file: the address.
    f.module.clear();
    CHECK(format_frame(f) == "0x7f0012345678");
}

TEST_CASE("an interpreter frame is qualname (path:line)", "[frame]")
{
    Frame f = InterpreterFrame{"Handler.get", "shop/routes.py", 18};
    CHECK(format_frame(f) == "Handler.get (shop/routes.py:18)");
    CHECK(format_frame(f, false) == "Handler.get (shop/routes.py:18)");
}
