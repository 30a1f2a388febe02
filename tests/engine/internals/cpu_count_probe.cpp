// Exits with joblet::cpu_count(): a fresh process for tests that move it into a cgroup first.
#include <joblet/cpu.hpp>
int main() { return joblet::cpu_count(); }
