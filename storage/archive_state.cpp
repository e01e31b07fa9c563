#include "storage/archive_state.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/VariadicBind.h>

namespace qunbot::storage {

namespace {

ArchivePosition read(SQLite::Statement& st)
{
    ArchivePosition p;
    p.tenant = st.getColumn(0).getString();
    p.seq = static_cast<std::uint64_t>(st.getColumn(1).getInt64());
    p.last_pull_ms = st.getColumn(2).getInt64();
    p.last_message_ms = st.getColumn(3).getInt64();
    p.messages = st.getColumn(4).getInt64();
    p.last_error = st.getColumn(5).getString();
    p.error_ms = st.getColumn(6).getInt64();
    return p;
}

constexpr const char* columns = "tenant, seq, last_pull_ms, last_message_ms, messages, last_error, error_ms";

} // namespace

ArchivePosition archive_position(SQLite::Database& db, const std::string& tenant)
{
    SQLite::Statement st(db, std::string("SELECT ") + columns + " FROM archive_state WHERE tenant = ?");
    st.bind(1, tenant);
    if (st.executeStep()) return read(st);
    ArchivePosition p;
    p.tenant = tenant;
    return p;
}

std::vector<ArchivePosition> archive_positions(SQLite::Database& db)
{
    std::vector<ArchivePosition> out;
    SQLite::Statement st(db, std::string("SELECT ") + columns + " FROM archive_state ORDER BY tenant");
    while (st.executeStep()) out.push_back(read(st));
    return out;
}

void advance_archive(SQLite::Database& db, const std::string& tenant, std::uint64_t seq, std::int64_t messages, std::int64_t last_message_ms,
                     std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO archive_state (tenant, seq, last_pull_ms, last_message_ms, messages) VALUES (?1, ?2, ?3, ?4, ?5)"
                             " ON CONFLICT (tenant) DO UPDATE SET seq = max(seq, ?2), last_pull_ms = ?3,"
                             " last_message_ms = max(last_message_ms, ?4), messages = messages + ?5");
    SQLite::bind(st, tenant, static_cast<std::int64_t>(seq), now_ms, last_message_ms, messages);
    st.exec();
}

void note_archive_pull(SQLite::Database& db, const std::string& tenant, const std::string& error, std::int64_t now_ms)
{
    SQLite::Statement st(db, "INSERT INTO archive_state (tenant, last_pull_ms, last_error, error_ms) VALUES (?1, ?2, ?3, CASE WHEN ?3 = '' THEN 0 ELSE ?2 END)"
                             " ON CONFLICT (tenant) DO UPDATE SET last_pull_ms = ?2, last_error = ?3,"
                             " error_ms = CASE WHEN ?3 = '' THEN error_ms ELSE ?2 END");
    SQLite::bind(st, tenant, now_ms, error);
    st.exec();
}

} // namespace qunbot::storage
