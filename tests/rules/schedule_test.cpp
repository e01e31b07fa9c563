// Schedule forms and slot times, checked against hand-computed UTC instants (zone rules from
// the IANA database: CST is UTC+8 all year; New York is UTC−5, UTC−4 from 2026-03-08 07:00 UTC
// to 2026-11-01 06:00 UTC).
#include "rules/schedule.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace qunbot::rules;
using namespace std::chrono;

namespace {

std::int64_t utc(int y, unsigned mo, unsigned d, int h, int mi)
{
    const sys_days date = year_month_day{year{y}, month{mo}, day{d}};
    return duration_cast<milliseconds>((date + hours{h} + minutes{mi}).time_since_epoch()).count();
}

ScheduleSpec spec(const std::string& text, const std::string& tz = "Asia/Shanghai")
{
    ScheduleSpec s;
    s.tz = tz;
    const auto error = parse_schedule(text, s);
    INFO(text << ": " << error.value_or(""));
    REQUIRE_FALSE(error.has_value());
    return s;
}

Slot next(const ScheduleSpec& s, std::int64_t after)
{
    auto slot = next_slot(s, after);
    REQUIRE(slot.has_value());
    return *slot;
}

} // namespace

TEST_CASE("friendly forms in Asia/Shanghai", "[schedule]")
{
    // Tuesday 2026-11-24 00:00 UTC = 08:00 CST.
    const auto tue = utc(2026, 11, 24, 0, 0);
    auto s = next(spec("daily 09:00"), tue);
    CHECK(s.key == "2026-11-24T09:00");
    CHECK(s.at_ms == utc(2026, 11, 24, 1, 0));
    CHECK(next(spec("daily 09:00"), s.at_ms).at_ms == utc(2026, 11, 25, 1, 0)); // strictly after
    CHECK(next(spec("mon,wed,fri 10:00"), tue).key == "2026-11-25T10:00");
    CHECK(next(spec("weekends 10:00"), tue).key == "2026-11-28T10:00");
    // Friday 21:00 CST: the next weekday 20:00 is Monday.
    CHECK(next(spec("weekdays 20:00"), utc(2026, 11, 27, 13, 0)).key == "2026-11-30T20:00");
    auto once = spec("at 2026-12-12 20:00");
    CHECK(next(once, tue).at_ms == utc(2026, 12, 12, 12, 0));
    CHECK_FALSE(next_slot(once, utc(2026, 12, 12, 12, 0)).has_value());
}

TEST_CASE("cron fields: steps, ranges, names, and day-of-month OR day-of-week", "[schedule]")
{
    const auto tue = utc(2026, 11, 24, 0, 0); // 08:00 CST
    CHECK(next(spec("*/15 9-10 * * *"), tue).key == "2026-11-24T09:00");
    CHECK(next(spec("*/15 9-10 * * *"), utc(2026, 11, 24, 1, 50)).key == "2026-11-24T10:00");
    CHECK(next(spec("0 9 * dec sat"), tue).key == "2026-12-05T09:00");
    // Both day fields restricted: the 1st of the month or any Monday, whichever comes first.
    CHECK(next(spec("0 9 1 * mon"), tue).key == "2026-11-30T09:00");
    CHECK(next(spec("0 9 1 * mon"), utc(2026, 11, 30, 2, 0)).key == "2026-12-01T09:00");
    CHECK(next(spec("0 8 * * 7"), tue).key == "2026-11-29T08:00"); // 7 is Sunday
}

TEST_CASE("leap day and end of month", "[schedule]")
{
    CHECK(next(spec("0 9 29 2 *"), utc(2026, 3, 1, 0, 0)).key == "2028-02-29T09:00");
    CHECK(next(spec("0 9 29 2 *"), utc(2026, 3, 1, 0, 0)).at_ms == utc(2028, 2, 29, 1, 0));
    CHECK(next(spec("0 9 31 * *"), utc(2026, 4, 1, 0, 0)).key == "2026-05-31T09:00");
    CHECK(next(spec("0 9 31 * *"), utc(2026, 5, 31, 2, 0)).key == "2026-07-31T09:00");
    CHECK(next(spec("at 2028-02-29 10:00"), utc(2026, 1, 1, 0, 0)).at_ms == utc(2028, 2, 29, 2, 0));
    CHECK_FALSE(next_slot(spec("0 9 30 2 *"), utc(2026, 1, 1, 0, 0)).has_value());
}

TEST_CASE("daylight saving time in America/New_York", "[schedule]")
{
    const std::string ny = "America/New_York";
    // Spring forward, 2026-03-08: 02:00–03:00 local does not exist. 02:30 fires when the gap
    // ends, 03:00 EDT = 07:00 UTC; the next day it is 02:30 EDT = 06:30 UTC.
    auto s = next(spec("30 2 * * *", ny), utc(2026, 3, 8, 5, 0));
    CHECK(s.key == "2026-03-08T02:30");
    CHECK(s.at_ms == utc(2026, 3, 8, 7, 0));
    CHECK(next(spec("30 2 * * *", ny), s.at_ms).at_ms == utc(2026, 3, 9, 6, 30));
    // Every 30 minutes across the gap: one firing at 03:00 EDT, not three.
    auto half = spec("*/30 * * * *", ny);
    auto a = next(half, utc(2026, 3, 8, 6, 45)); // 01:45 EST
    CHECK(a.key == "2026-03-08T02:00");
    CHECK(a.at_ms == utc(2026, 3, 8, 7, 0));
    auto b = next(half, a.at_ms);
    CHECK(b.key == "2026-03-08T03:30");
    CHECK(b.at_ms == utc(2026, 3, 8, 7, 30));
    // Fall back, 2026-11-01: 01:30 happens twice; it fires once, at the first (EDT, 05:30 UTC).
    auto f = next(spec("30 1 * * *", ny), utc(2026, 11, 1, 4, 0));
    CHECK(f.key == "2026-11-01T01:30");
    CHECK(f.at_ms == utc(2026, 11, 1, 5, 30));
    auto g = next(spec("30 1 * * *", ny), f.at_ms);
    CHECK(g.key == "2026-11-02T01:30");
    CHECK(g.at_ms == utc(2026, 11, 2, 6, 30));
    // A daily 09:00 moves with the clocks: 14:00 UTC in winter, 13:00 UTC in summer.
    CHECK(next(spec("daily 09:00", ny), utc(2026, 3, 7, 15, 0)).at_ms == utc(2026, 3, 8, 13, 0));
    CHECK(next(spec("daily 09:00", ny), utc(2026, 10, 31, 14, 0)).at_ms == utc(2026, 11, 1, 14, 0));
}

TEST_CASE("schedule errors say what is wrong", "[schedule]")
{
    auto error = [](const std::string& text) {
        ScheduleSpec s;
        return parse_schedule(text, s).value_or("(no error)");
    };
    CHECK(error("dialy 09:00") == "\"dialy\": expected daily, weekdays, weekends or days like mon,wed,fri");
    CHECK(error("daily 9am") == "\"9am\" is not a time of day like 09:00");
    CHECK(error("0 25 * * *") == "hour: \"25\" is outside 0-23");
    CHECK(error("at 2026-02-30 10:00") == "\"2026-02-30\" is not a date");
    CHECK(error("0 9 * *") .find("five cron fields") != std::string::npos);
    CHECK(known_time_zone("Europe/Berlin"));
    CHECK_FALSE(known_time_zone("Mars/Olympus"));
}
