// Where the report's big tables get their memory: the rows made anew each
// interval, one per live handle (100,000 at scale, ~20 MB of them). What
// matters is not the allocator but the pages under it: the report's memory
// goes back to the system after each report (or connleak would keep its
// peak for good), so each report faults every page of its rows in again,
// ~2 to 4 us a 4 KiB page on a VM, most of a report's cost at scale. The
// program may install a source that maps those rows on huge pages
// (system/row_arena); by default, and in tests, operator new.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace connleak {

struct RowMemory {
    void* (*allocate)(size_t bytes) = nullptr;
    void (*deallocate)(void* p, size_t bytes) = nullptr;
};

// Installed once, before any row is made, never changed after (a row made
// from one source is given back to the same).
void install_row_memory(const RowMemory& source);
const RowMemory* row_memory();  // null: operator new

template <typename T>
struct RowAllocator {
    using value_type = T;
    RowAllocator() noexcept = default;
    template <typename U>
    RowAllocator(const RowAllocator<U>&) noexcept  // NOLINT: rebinding, as std::allocator
    {}
    T* allocate(size_t n)
    {
        if (const RowMemory* m = row_memory())
            if (void* p = m->allocate(n * sizeof(T)))
                return static_cast<T*>(p);
        return std::allocator<T>().allocate(n);
    }
    void deallocate(T* p, size_t n) noexcept
    {
        if (const RowMemory* m = row_memory())
            m->deallocate(p, n * sizeof(T));  // gives what it did not make to operator delete
        else
            std::allocator<T>().deallocate(p, n);
    }
    friend bool operator==(const RowAllocator&, const RowAllocator&) { return true; }
    friend bool operator!=(const RowAllocator&, const RowAllocator&) { return false; }
};

}  // namespace connleak
