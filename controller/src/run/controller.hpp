// The run mode: every part of the controller started on its own thread,
// wired together, and stopped in order on SIGTERM or SIGINT.
//
//   consumer ──deliveries──▶ creation flow (creator + recorder) ◀── pod watch
//                                   │ settle (ack / dead-letter)
//   consumer ◀──────────────────────┘
//   lease elector ──is_leader──▶ leader duties (reaper, reconciler)
//   ops endpoint: /healthz /readyz /metrics
#pragma once

#include "run/settings.hpp"

namespace pod_router::controller {

// Blocks until a signal asks it to stop; returns the process exit code.
int run_controller(const RunSettings &settings);

} // namespace pod_router::controller
