#pragma once
/// \file
/// The session archive's position per corp: the last seq stored (written in the same
/// transaction as the events it produced, so a crash never skips or repeats a message), and what
/// the last pull did.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace qunbot::storage {

struct ArchivePosition {
    std::string tenant;
    std::uint64_t seq = 0;
    std::int64_t last_pull_ms = 0;
    std::int64_t last_message_ms = 0;
    std::int64_t messages = 0;
    std::string last_error;   ///< empty when the last pull went well
    std::int64_t error_ms = 0;
};

[[nodiscard]] ArchivePosition archive_position(SQLite::Database& db, const std::string& tenant);
[[nodiscard]] std::vector<ArchivePosition> archive_positions(SQLite::Database& db);
/// Moves the position to `seq` (never backwards) and counts `messages`. Call in the transaction
/// that stores the events.
void advance_archive(SQLite::Database& db, const std::string& tenant, std::uint64_t seq, std::int64_t messages,
                     std::int64_t last_message_ms, std::int64_t now_ms);
/// Records how a pull ended: `error` empty for success.
void note_archive_pull(SQLite::Database& db, const std::string& tenant, const std::string& error, std::int64_t now_ms);

} // namespace qunbot::storage
