// NamePairs: a handle's database and user kept once per distinct pair, ids
// renumbered when unused pairs are dropped.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "name_pairs.h"

using connleak::NamePairs;
using connleak::SharedText;

TEST_CASE("name pairs: one id per distinct pair, texts as given")
{
    NamePairs names;
    const NamePairs::Id a = names.id("shop", "app");
    const NamePairs::Id b = names.id("shop", "admin");
    const NamePairs::Id c = names.id("", "");
    REQUIRE(a == 1);
    REQUIRE(b == 2);
    REQUIRE(c == 3);
    REQUIRE(names.id("shop", "app") == a);
    REQUIRE(names.id("", "") == c);
    REQUIRE(names.size() == 3);
    REQUIRE(names.database(a) == "shop");
    REQUIRE(names.user(a) == "app");
    REQUIRE(names.user(b) == "admin");
    REQUIRE(names.database(c).empty());
    // The pair, not each text: ("ab", "c") is not ("a", "bc").
    REQUIRE(names.id("ab", "c") != names.id("a", "bc"));
}

TEST_CASE("name pairs: compact keeps the pairs in use, renumbered in order")
{
    NamePairs names;
    for (int i = 0; i < 100; i++)
        names.id("db" + std::to_string(i), "u");
    REQUIRE(names.wants_compact());  // 100 > 64
    // The pair's one copy, which handles' states share, survives the renumbering.
    const SharedText db69 = names.database(70);
    const std::vector<NamePairs::Id> renumber = names.compact({0, 70, 5, 70, 99});
    REQUIRE(renumber.size() == 101);
    REQUIRE(names.size() == 3);
    REQUIRE(renumber[0] == 0);
    REQUIRE(renumber[5] == 1);  // db4
    REQUIRE(renumber[70] == 2);
    REQUIRE(renumber[99] == 3);
    REQUIRE(renumber[1] == 0);
    REQUIRE(renumber[100] == 0);
    REQUIRE(names.database(1) == "db4");
    REQUIRE(names.database(2) == "db69");
    REQUIRE(names.database(3) == "db98");
    REQUIRE(&names.database(2).str() == &db69.str());
    REQUIRE_FALSE(names.wants_compact());
    // A dropped pair made again gets a new id; a kept one its new id.
    REQUIRE(names.id("db69", "u") == 2);
    REQUIRE(names.id("db0", "u") == 4);
    REQUIRE(names.database(4) == "db0");
}

TEST_CASE("name pairs: the compaction limit follows the pairs in use")
{
    NamePairs names;
    for (int i = 0; i < 64; i++)
        names.id("db" + std::to_string(i), "u");
    REQUIRE_FALSE(names.wants_compact());  // at most 64 before any compact
    names.id("one more", "u");
    REQUIRE(names.wants_compact());
    std::vector<NamePairs::Id> all;
    for (NamePairs::Id id = 1; id <= 65; id++)
        all.push_back(id);
    names.compact(all);
    REQUIRE(names.size() == 65);
    for (int i = 0; i < 65; i++)
        names.id("more" + std::to_string(i), "u");
    REQUIRE_FALSE(names.wants_compact());  // 130 = twice those in use
    names.id("and one", "u");
    REQUIRE(names.wants_compact());
}
