// The tops of a process tree (process_tree.h): the processes a launched
// command's stop signals itself, the rest being left to their parents.
#include <catch2/catch.hpp>

#include "process_tree.h"

using namespace connleak;

TEST_CASE("tree_tops: the command, not the workers under it")
{
    // 100 the command (connleak's child), 101 and 102 its workers, 103 a worker's child.
    const std::map<uint32_t, uint32_t> parents = {{1, 0}, {50, 1}, {100, 50}, {101, 100}, {102, 100}, {103, 101}};
    CHECK(tree_tops(parents, {100, 101, 102, 103}) == std::vector<uint32_t>{100});
}

TEST_CASE("tree_tops: a process whose parent left the tree is a top")
{
    // The command exited: its workers were re-parented to init (or a subreaper).
    const std::map<uint32_t, uint32_t> parents = {{1, 0}, {101, 1}, {102, 7}, {103, 101}};
    CHECK(tree_tops(parents, {101, 102, 103}) == std::vector<uint32_t>{101, 102});
    // A traced orphan beside a running command: both tops.
    const std::map<uint32_t, uint32_t> beside = {{100, 50}, {101, 100}, {104, 1}};
    CHECK(tree_tops(beside, {104, 101, 100}) == std::vector<uint32_t>{100, 104});
}

TEST_CASE("tree_tops: a process gone from /proc is a top, an empty tree has none")
{
    CHECK(tree_tops({{101, 100}}, {100, 101}) == std::vector<uint32_t>{100});  // 100's stat unreadable
    CHECK(tree_tops({{101, 100}}, {}).empty());
    CHECK(tree_tops({{5, 5}}, {5}) == std::vector<uint32_t>{5});  // its own parent: never left out
}
