#include "adapters/wecom/api_error.hpp"

#include <string>

namespace qunbot::wecom {

std::string_view to_string(ApiErrorKind kind) noexcept
{
    switch (kind) {
    case ApiErrorKind::token_invalid: return "token_invalid";
    case ApiErrorKind::busy: return "busy";
    case ApiErrorKind::frequency_limited: return "frequency_limited";
    case ApiErrorKind::concurrency_limited: return "concurrency_limited";
    case ApiErrorKind::not_sent: return "not_sent";
    case ApiErrorKind::unknown_outcome: return "unknown_outcome";
    case ApiErrorKind::server_error: return "server_error";
    case ApiErrorKind::bad_response: return "bad_response";
    case ApiErrorKind::rejected: return "rejected";
    case ApiErrorKind::credentials: return "credentials";
    }
    return "rejected";
}

bool ApiError::transient() const noexcept
{
    switch (kind) {
    case ApiErrorKind::busy:
    case ApiErrorKind::frequency_limited:
    case ApiErrorKind::concurrency_limited:
    case ApiErrorKind::not_sent:
    case ApiErrorKind::server_error:
    case ApiErrorKind::token_invalid:
        return true;
    default:
        return false;
    }
}

std::string_view errcode_meaning(int errcode) noexcept
{
    switch (errcode) {
    case -1: return "WeCom is busy";
    case 40001: return "wrong secret, or the access_token is invalid";
    case 40013: return "invalid corp id";
    case 40014: return "invalid access_token";
    case 40096: return "invalid external_userid";
    case 41001: return "access_token missing";
    case 41046: return "missing mass-send msgid";
    case 41047: return "invalid mass-send msgid";
    case 41048: return "no customer can receive this mass send";
    case 41050: return "welcome code invalid or older than 20 s";
    case 41051: return "welcome code already used (the customer is already chatting, or another app welcomed first)";
    case 41053: return "the customer has not agreed to chat archiving";
    case 41055: return "group welcome templates are at the limit (100 per corp)";
    case 42001: return "access_token expired";
    case 45009: return "API frequency limit reached";
    case 45033: return "API concurrency limit reached";
    case 48002: return "API not allowed for this app (add it to 客户联系 → 可调用接口的应用)";
    case 60011: return "no permission (outside the app's visible range)";
    case 60020: return "server IP not in the app's trusted IP list";
    case 81013: return "all recipients are invalid or outside the visible range";
    case 81017: return "too many items in one request (use an owner filter)";
    case 84061: return "no friend relationship between the staff member and the customer";
    case 86001: return "invalid app chat id";
    case 86008: return "the app chat was not created by this app";
    case 86215: return "app chat id already exists";
    case 86216: return "member not in the corp or not in the chat";
    case 93000: return "invalid webhook URL, or the robot was removed from the group";
    case 93004: return "the robot is disabled";
    case 93008: return "the robot is not in the group";
    default: return {};
    }
}

std::string ApiError::describe() const
{
    std::string out = api.empty() ? std::string() : api + ": ";
    if (errcode != 0) {
        out += std::to_string(errcode);
        if (auto m = errcode_meaning(errcode); !m.empty()) out += " (" + std::string(m) + ")";
        if (!errmsg.empty()) out += ": " + errmsg;
    } else {
        out += std::string(to_string(kind)) + ": " + errmsg;
    }
    return out;
}

} // namespace qunbot::wecom
