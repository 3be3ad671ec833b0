// The registry's tables, as store migrations numbered 100..199 (other modules
// own other blocks). The daemon passes these to store::Database::open.
#pragma once

#include <vector>

#include "store/database.h"

namespace tamaya::registry {

std::vector<store::Migration> migrations();

}  // namespace tamaya::registry
