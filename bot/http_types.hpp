#pragma once
/// \file
/// Plain request/response values between the HTTP server and the routes, so that route code
/// does not include Beast or Asio.

#include <functional>
#include <string>

namespace qunbot::bot {

struct HttpRequest {
    std::string method; ///< "GET", "POST", ...
    std::string target; ///< origin-form: path and query
    std::string body;
    std::string remote; ///< peer address, for logs
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

/// Completes a request; may be called from any thread, exactly once.
using Respond = std::function<void(HttpResponse)>;
/// Handles a request and calls `respond` when the answer is known (possibly later, e.g. after
/// the journal commit).
using Handler = std::function<void(HttpRequest, Respond)>;

} // namespace qunbot::bot
