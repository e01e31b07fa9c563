// The one translation unit that compiles Asio, Beast and Boost.URL (BOOST_*_SEPARATE_COMPILATION is set
// for the whole tree), so no other file pays for their implementation.
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
#include <boost/url/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
