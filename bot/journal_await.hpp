#pragma once
/// \file
/// Awaiting a write through the journal's single writer from a coroutine on a strand.

#include "storage/journal.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>
#include <string>

namespace qunbot::bot {

/// Submits `work` and resumes on `strand` with its error ("" when committed). Not a coroutine
/// itself: the initiation object must not be a temporary inside a co_await expression (g++ 12).
/// `keep` (usually the caller's shared state) is held until the write has answered.
template <class Strand, class Keep>
boost::asio::awaitable<std::string> commit_on(Strand strand, storage::Journal& journal, storage::WriteWork work, Keep keep)
{
    return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(std::string)>(
        [strand, &journal, keep, work = std::move(work)](auto handler) mutable {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            journal.submit(std::move(work), [strand, keep, h](std::string error) {
                boost::asio::post(strand, [h, error = std::move(error)]() mutable { (*h)(std::move(error)); });
            });
        },
        boost::asio::use_awaitable);
}

} // namespace qunbot::bot
