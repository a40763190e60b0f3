"""Test configuration: hypothesis profile without deadlines (numba compiles on first call), and the
two tiers: ``python -m pytest -q`` (the README's command) deselects the tests marked ``slow``;
``python -m pytest -q -m slow`` runs them (CI runs both)."""
import os

import pytest

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.register_profile("dev", deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


SLOW = (
    "tests/huang2024/test_correlated.py::test_equicorrelated_isotropic_loss_is_the_orthonormal_one_scaled",
    "tests/huang2024/test_relative_accuracy.py::test_many_classes_match_50_digit_bruteforce",
    "tests/huang2024/test_correlated.py::test_one_reduced_step_is_one_step_on_the_full_Q",
    "tests/huang2024/test_correlated.py::test_class_reduced_equicorrelated_path_equals_the_K_by_K_path",
    "tests/li2024/test_construction.py::test_analyze_evaluates_a_saved_run_on_a_grid",
    "tests/huang2024/test_crosscheck.py::test_the_check_detects_a_wrong_trajectory",
    "tests/huang2024/test_flow.py::test_integrators_agree_on_the_convergence_times",
    "tests/yang2024/test_model.py::test_sweep_over_heads_gives_the_numbers_of_single_runs",
    "tests/li2024_cot/test_exact.py::test_exact_loss_and_gradient_match_enumeration",
    "tests/huang2024/test_crosscheck.py::test_exact_dynamics_pass_the_monte_carlo_check",
    "tests/huang2024/test_exact.py::test_matches_bruteforce_enumeration",
    "tests/huang2024/test_exact.py::test_reduced_equals_general",
    "tests/huang2024/test_flow.py::test_hessian_matches_central_differences_of_the_exact_gradient",
    "tests/huang2024/test_jacobian.py::test_matches_central_differences_of_the_50_digit_bruteforce",
    "tests/huang2024/test_montecarlo.py::test_online_sgd_follows_exact_population_gd",
    "tests/huang2024/test_reference.py::test_matches_the_recorded_runs_to_rounding",
    "tests/huang2024/test_relative_accuracy.py::test_every_part_matches_50_digit_bruteforce",
    "tests/huang2024/test_reproduce.py::test_empirical_training_follows_exact_dynamics",
    "tests/huang2024/test_reproduce.py::test_phases_target_order_and_gd_matches_flow",
    "tests/huang2024/test_reproduce.py::test_scaling_exponents_within_bands_of_the_theorem",
    "tests/huang2024/test_reproduce.py::test_stagewise_dominant_converges_first",
    "tests/huang2024/test_simulate.py::test_cli_bad_input_exits_2_with_one_line",
    "tests/huang2024/test_simulate.py::test_cli_killed_run_resumes_to_identical_numbers",
    "tests/huang2024/test_simulate.py::test_cli_toml_config_with_flag_override",
    "tests/li2024/test_frontend.py::test_run_directory_holds_results_state_and_figures",
    "tests/li2024/test_gradients.py::test_gradient_matches_torch_autograd",
    "tests/li2024/test_reproduce.py::test_li_alpha_required_length_falls_as_alpha_test_grows",
    "tests/li2024/test_reproduce.py::test_li_baselines_table_or_clean_skip",
    "tests/li2024/test_reproduce.py::test_li_mechanism_induction_head_and_embeddings",
    "tests/li2024/test_reproduce.py::test_li_ood_norm_tied_patterns_show_the_norm_effect",
    "tests/li2024/test_reproduce.py::test_li_pruning_magnitude_beats_random",
    "tests/li2024_cot/test_decoding.py::test_copying_attention_decodes_every_step",
    "tests/li2024_cot/test_reproduce.py::test_cot_length",
    "tests/li2024_cot/test_reproduce.py::test_cot_training",
    "tests/li2024_cot/test_reproduce.py::test_cot_vs_icl",
    "tests/test_bad_input.py::test_closed_pipe_is_silent",
    "tests/test_bad_input.py::test_real_processes",
    "tests/test_numba_cache.py::test_environment_variable_turns_caching_off",
    "tests/test_readme.py::test_python_blocks_run",
    "tests/test_readme.py::test_shell_blocks_run",
    "tests/test_sweep.py::test_ctrl_c_exits_130_with_one_line_and_keeps_the_points_done",
    "tests/test_sweep.py::test_dataset_is_labelled_and_matches_simulate",
    "tests/test_sweep.py::test_killed_sweep_process_resumes_to_identical_dataset",
    "tests/test_sweep.py::test_killed_worker_process_fails_its_point_then_rerun_completes",
    "tests/test_sweep.py::test_local_workers_run_numba_single_threaded",
    "tests/yang2024/test_closed_form.py::test_full_and_reduced_trajectories_agree",
    "tests/yang2024/test_closed_form.py::test_loss_and_w_gradient_match_monte_carlo",
    "tests/yang2024/test_closed_form.py::test_monte_carlo_detects_a_wrong_noise_scale",
    "tests/yang2024/test_model.py::test_crosscheck_passes_and_fails_for_a_wrong_step",
    "tests/yang2024/test_model.py::test_eps_rule_and_first_crossings",
    "tests/yang2024/test_model.py::test_flow_is_the_small_step_limit_of_gd",
    "tests/yang2024/test_model.py::test_run_directory_figures_and_manifest",
    "tests/yang2024/test_reproduce.py::test_convergence_is_geometric_when_H_at_least_N",
    "tests/yang2024/test_reproduce.py::test_fig2_losses_fall_together_ood_above_id",
    "tests/yang2024/test_reproduce.py::test_fig3_gap_is_smallest_near_N_equal_m",
    "tests/yang2024/test_reproduce.py::test_heads_stall_below_N_converge_above_unstable_at_many",
    "tests/yang2024/test_reproduce.py::test_ridge_limit",
)
"""Test functions marked ``slow`` here (every parametrisation): the first nine took 5 s or more in
the fast tier on an idle machine after the issues of December 2026 merged, the rest 3 s or more in a
timed run of the whole suite at load 4-9 (benchmarks/RESULTS.md has the tiers' times).  They are
the 50-digit oracles, cross-checks against Monte Carlo, reproduce targets, the README's commands,
and subprocess tests of kills and resumes.  A new test may also carry
``@pytest.mark.slow`` itself."""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if f"{item.location[0]}::{item.originalname}" in SLOW:
            item.add_marker(pytest.mark.slow)
