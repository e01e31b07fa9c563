#include "storage/activity.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

namespace qunbot::storage {

std::vector<ActivityRow> query_activity(SQLite::Database& db, const ActivityFilter& filter)
{
    std::string sql = "SELECT id, event_id, at, group_id, member_id, kind, scene, detail FROM activity WHERE 1=1";
    if (filter.group_id) sql += " AND group_id = :group";
    if (filter.since) sql += " AND at >= :since";
    sql += " ORDER BY at DESC, id DESC LIMIT :limit";
    SQLite::Statement st(db, sql);
    if (filter.group_id) st.bind(":group", *filter.group_id);
    if (filter.since) st.bind(":since", static_cast<std::int64_t>(*filter.since));
    st.bind(":limit", static_cast<std::int64_t>(filter.limit));
    std::vector<ActivityRow> rows;
    while (st.executeStep()) {
        ActivityRow r;
        r.id = st.getColumn(0).getInt64();
        r.event_id = st.getColumn(1).getInt64();
        r.at = st.getColumn(2).getInt64();
        r.group_id = st.getColumn(3).getString();
        r.member_id = st.getColumn(4).getString();
        r.kind = st.getColumn(5).getString();
        if (!st.getColumn(6).isNull()) r.scene = st.getColumn(6).getInt();
        r.detail = st.getColumn(7).getString();
        rows.push_back(std::move(r));
    }
    return rows;
}

} // namespace qunbot::storage
