#include "cli/cli.h"
#include "daemon/serve.h"

int main(int argc, char** argv) { return tamaya::cli::run(argc, argv, tamaya::daemon::serve); }
