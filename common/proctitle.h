// Process titles as ps(1) shows them ("redhubd: master", "redhubd: worker 0"),
// by overwriting the argv area as nginx does (ngx_setproctitle.c).
#pragma once

#include <string>
#include <vector>

namespace redhub {

// Call once at start, before anything reads environ: moves the environment
// out of the argv area so the title can use it. Returns a copy of argv, for
// re-executing the binary later.
std::vector<std::string> InitProcTitle(int argc, char** argv);
void SetProcTitle(const std::string& title);

}  // namespace redhub
