// A map that copies share until one of them is changed (copy on write).
// The socket tracer keeps each process's socket report and hands it out
// again every report while nothing moved; the report's per-handle map was
// copied each time (100,000 nodes at scale, ~70 ms of every report). Now a
// copy is a counted reference; a writer gets its own map first.
//
// The map is a vector sorted by key, not a tree: it lives between reports
// (one entry per live handle, 100,000 at scale), and a tree node cost 48
// bytes more than the entry (its links and its allocation's own header).
// It is filled in key order (the handles come by address): an insert at the
// end is an append.
#pragma once

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

namespace connleak {

template <class Key, class Value>
class SharedMap {
public:
    using value_type = std::pair<Key, Value>;
    using Map = std::vector<value_type>;  // sorted by key, keys unique
    using const_iterator = typename Map::const_iterator;
    using iterator = const_iterator;  // read access only: writes go through operator[] or edit()

    const Map& map() const { return map_ ? *map_ : empty_map(); }
    const_iterator begin() const { return map().begin(); }
    const_iterator end() const { return map().end(); }
    const_iterator find(const Key& k) const
    {
        const Map& m = map();
        auto it = lower(m, k);
        return it != m.end() && it->first == k ? it : m.end();
    }
    size_t count(const Key& k) const { return find(k) != end() ? 1 : 0; }
    const Value& at(const Key& k) const
    {
        auto it = find(k);
        if (it == end())
            throw std::out_of_range("SharedMap::at");
        return it->second;
    }
    size_t size() const { return map().size(); }
    bool empty() const { return map().empty(); }

    // The entries to change: this copy's own (cloned first if another copy
    // shares them, so no other copy sees the change). Whoever adds entries
    // here keeps them sorted by key, each key once.
    Map& edit()
    {
        if (!map_)
            map_ = std::make_shared<Map>();
        else if (map_.use_count() > 1)
            map_ = std::make_shared<Map>(*map_);
        return *map_;
    }
    // Room for n entries in this copy's own map (filled without regrowing).
    void reserve(size_t n) { edit().reserve(n); }
    Value& operator[](const Key& k)
    {
        Map& m = edit();
        if (m.empty() || m.back().first < k) {
            m.emplace_back(k, Value{});
            return m.back().second;
        }
        auto it = std::lower_bound(m.begin(), m.end(), k, [](const value_type& e, const Key& key) { return e.first < key; });
        if (it == m.end() || it->first != k)
            it = m.emplace(it, k, Value{});
        return it->second;
    }
    void clear() { map_.reset(); }

    // Whether both copies read the very same map (for tests and measures).
    bool shares_with(const SharedMap& other) const { return map_ && map_ == other.map_; }

    friend bool operator==(const SharedMap& a, const SharedMap& b) { return a.map() == b.map(); }
    friend bool operator!=(const SharedMap& a, const SharedMap& b) { return !(a == b); }

private:
    static const_iterator lower(const Map& m, const Key& k)
    {
        return std::lower_bound(m.begin(), m.end(), k, [](const value_type& e, const Key& key) { return e.first < key; });
    }
    static const Map& empty_map()
    {
        static const Map none;
        return none;
    }
    std::shared_ptr<Map> map_;  // null: empty
};

}  // namespace connleak
