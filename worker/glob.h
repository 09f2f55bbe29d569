// Redis's glob-style pattern matching (stringmatchlen): * ? [abc] [^a-z] \x.
#pragma once

#include <string_view>

namespace redhub::worker {

bool GlobMatch(std::string_view pattern, std::string_view text, bool nocase = false);

}  // namespace redhub::worker
