#include "bot/app_api.hpp"

#include <stdexcept>

namespace qunbot::bot {

AppApi make_app_api(boost::asio::any_io_executor executor, const AppConfig& app, const DeliveryConfig& delivery,
                    std::function<std::int64_t()> now_ms)
{
    AppApi out;
    if (!app.has_api()) return out;
    auto origin = https::parse_origin(app.api_base_url);
    if (!origin) throw std::runtime_error("app \"" + app.name + "\": " + origin.error().message);
    https::Options ho;
    ho.ca_file = app.api_ca_file;
    ho.connect_timeout = std::chrono::milliseconds(delivery.connect_timeout_ms);
    ho.request_timeout = std::chrono::milliseconds(delivery.request_timeout_ms);
    out.http = std::make_unique<https::Client>(std::move(executor), ho);
    wecom::ApiOptions ao;
    ao.origin = *origin;
    ao.corp_id = app.corp_id;
    ao.corp_secret = app.corp_secret;
    ao.agent_id = app.agent_id;
    ao.busy_backoff = std::chrono::milliseconds(std::max<std::uint32_t>(10, delivery.retry_base_ms / 5));
    if (now_ms) ao.now_ms = std::move(now_ms);
    out.api = std::make_unique<wecom::ApiClient>(*out.http, ao);
    return out;
}

} // namespace qunbot::bot
