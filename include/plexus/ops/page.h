// -----------------------------------------------------------------------------
// plexus/ops/page.h
// -----------------------------------------------------------------------------
//
// The operator view's web page: one HTML document with its style and script inline, built
// into the library, so it works where the server has no network and the browser no access
// beyond the view. Its script polls the view's JSON endpoints every second.
//
// Thread safety: returns a view of static, immutable data.

#pragma once

#include <string_view>

namespace plexus::ops {

std::string_view OperatorPageHtml() noexcept;

}  // namespace plexus::ops
