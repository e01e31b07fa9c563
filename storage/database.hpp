#pragma once
/// \file
/// Opening the SQLite database: WAL, pragmas, versioned migrations. One `SQLite::Database` per
/// thread (SQLiteCpp connections are not shareable); only the journal writer writes.

#include <memory>
#include <string>

namespace SQLite {
class Database;
}

namespace qunbot::storage {

/// How hard a commit waits for the disk. `full` survives power loss, `normal` survives a
/// process crash (kill -9) but may lose the last commits on power loss.
enum class Durability { full, normal };

/// Opens (creating if needed) the database for writing and applies every pending migration.
/// Throws SQLite::Exception / std::runtime_error: this is start-up code.
[[nodiscard]] std::unique_ptr<SQLite::Database> open_for_writing(const std::string& path, Durability durability);
/// Opens an existing database read-only (for CLI reports); throws if it does not exist.
[[nodiscard]] std::unique_ptr<SQLite::Database> open_for_reading(const std::string& path);
/// The schema version this build migrates to.
[[nodiscard]] int schema_version() noexcept;

} // namespace qunbot::storage
