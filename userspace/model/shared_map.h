// A map that copies share until one of them is changed (copy on write).
// The socket tracer keeps each process's socket report and hands it out
// again every report while nothing moved; the report's per-handle map was
// copied each time (100,000 nodes at scale, ~70 ms of every report). Now a
// copy is a counted reference; a writer gets its own map first.
#pragma once

#include <map>
#include <memory>

namespace connleak {

template <class Key, class Value>
class SharedMap {
public:
    using Map = std::map<Key, Value>;
    using const_iterator = typename Map::const_iterator;
    using iterator = const_iterator;  // read access only: writes go through operator[] or edit()

    const Map& map() const { return map_ ? *map_ : empty_map(); }
    const_iterator begin() const { return map().begin(); }
    const_iterator end() const { return map().end(); }
    const_iterator find(const Key& k) const { return map().find(k); }
    size_t count(const Key& k) const { return map().count(k); }
    const Value& at(const Key& k) const { return map().at(k); }
    size_t size() const { return map().size(); }
    bool empty() const { return map().empty(); }

    // The map to change: this copy's own (cloned first if another copy
    // shares it, so no other copy sees the change).
    Map& edit()
    {
        if (!map_)
            map_ = std::make_shared<Map>();
        else if (map_.use_count() > 1)
            map_ = std::make_shared<Map>(*map_);
        return *map_;
    }
    Value& operator[](const Key& k) { return edit()[k]; }
    void clear() { map_.reset(); }

    // Whether both copies read the very same map (for tests and measures).
    bool shares_with(const SharedMap& other) const { return map_ && map_ == other.map_; }

    friend bool operator==(const SharedMap& a, const SharedMap& b) { return a.map() == b.map(); }
    friend bool operator!=(const SharedMap& a, const SharedMap& b) { return !(a == b); }

private:
    static const Map& empty_map()
    {
        static const Map none;
        return none;
    }
    std::shared_ptr<Map> map_;  // null: empty
};

}  // namespace connleak
