#pragma once
// The 2D Ising model on an L x L square lattice with periodic boundaries (J = 1, no field),
// simulated at one temperature by Monte Carlo. This is the user code of the ising_sweep
// example: it knows nothing of joblet. simulate() is a pure function of its parameters (the
// random seed is one of them), so a parallel sweep gives bit-identical results whatever the
// backend and the number of workers, and a disk cache can key an entry on the parameters alone.

#include <cereal/cereal.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ising {

// Critical temperature of the infinite lattice, 2 / ln(1 + sqrt 2) (Onsager).
inline constexpr double kCriticalTemperature = 2.269185314213022;

enum class Algorithm : std::uint8_t {
  metropolis,  // single-spin flips with a precomputed acceptance table: simple, slow near T_c
  wolff,       // cluster flips: no critical slowing down, so fewer sweeps give honest error bars near T_c
};

std::string_view algorithm_name(Algorithm algorithm);
// Throws std::invalid_argument for a name that is neither "metropolis" nor "wolff".
Algorithm parse_algorithm(std::string_view name);

// One task of a sweep. Every field that changes the result is here, the seed included: these
// parameters are what a cache key is made of.
struct IsingParams {
  int size = 32;  // L: the lattice has L x L spins
  double temperature = kCriticalTemperature;
  int equilibration_sweeps = 1000;  // discarded before measuring
  int measurement_sweeps = 10000;   // one measurement after each
  Algorithm algorithm = Algorithm::wolff;
  std::uint64_t seed = 0;

  template <class Archive>
  void serialize(Archive& archive) {
    archive(size, temperature, equilibration_sweeps, measurement_sweeps, algorithm, seed);
  }
};

// Averages over the measurement sweeps; quantities are per spin. A sweep is L*L single-spin
// Metropolis updates, or a fixed number of Wolff clusters that flips about L*L spins on
// average (the number is measured while equilibrating).
struct IsingResult {
  double temperature = 0;
  double abs_magnetization = 0;        // <|m|>
  double abs_magnetization_error = 0;  // standard error from block averages
  double energy = 0;                   // <e>
  double energy_error = 0;
  double susceptibility = 0;   // chi = N (<m^2> - <|m|>^2) / T
  double specific_heat = 0;    // C = N (<e^2> - <e>^2) / T^2
  double binder_cumulant = 0;  // U = 1 - <m^4> / (3 <m^2>^2): curves for different L cross at T_c

  template <class Archive>
  void serialize(Archive& archive) {
    archive(temperature, abs_magnetization, abs_magnetization_error, energy, energy_error, susceptibility,
            specific_heat, binder_cumulant);
  }
};

// Runs the simulation. Throws std::invalid_argument for invalid parameters.
IsingResult simulate(const IsingParams& params);

// A well-mixed seed for task `index` of a sweep started with `base_seed`: neighbouring
// indices get unrelated random streams, and the seed depends on nothing else.
std::uint64_t task_seed(std::uint64_t base_seed, std::size_t index);

// Exact results for the infinite lattice, to compare with (finite L rounds them near T_c).
double onsager_magnetization(double temperature);  // spontaneous magnetization; 0 at and above T_c
double onsager_energy(double temperature);         // internal energy per spin

}  // namespace ising
