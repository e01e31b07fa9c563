#pragma once
/// \file
/// Reading the member activity log (the writer side is in the journal).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace qunbot::storage {

struct ActivityRow {
    std::int64_t id = 0;
    std::int64_t event_id = 0;
    std::int64_t at = 0; ///< event time, unix seconds
    std::string group_id;
    std::string member_id;
    std::string kind;
    std::optional<int> scene;
    std::string detail;
};

struct ActivityFilter {
    std::optional<std::string> group_id;
    std::optional<std::int64_t> since; ///< unix seconds, inclusive
    std::size_t limit = 50;
};

/// Most recent first.
[[nodiscard]] std::vector<ActivityRow> query_activity(SQLite::Database& db, const ActivityFilter& filter);

} // namespace qunbot::storage
