"""
The launch files name only executables and files that exist and load with launch_ros.

Also: the XML and YAML front ends declare what diffmsm.launch.py declares, the parameters
file check of diffmsm.launch.py, and the replay command's ROS arguments.  (Started for real:
test_ros2_launch_namespace.py and test_ros2_readme_workspace.py.)
"""

import ast
import configparser
import importlib.util
import os
import re

from diffmsm_ros import settings
from diffmsm_ros.cli import main as cli
import pytest
import ros2_tools
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, 'launch', 'diffmsm.launch.py')
REPLAY_LAUNCH = os.path.join(ROOT, 'launch', 'replay.launch.py')
FRONT_ENDS = [os.path.join(ROOT, 'launch', 'diffmsm.launch.' + ext) for ext in ('xml', 'yaml')]


def _constants(tree):
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out


def _console_scripts():
    text = open(os.path.join(ROOT, 'setup.py'), encoding='utf-8').read()
    return dict(re.findall(r"'(\w+) = ([\w.:]+)'", text))


def test_launch_file_names_what_exists():
    tree = ast.parse(open(LAUNCH, encoding='utf-8').read())
    consts = _constants(tree)
    package_xml = open(os.path.join(ROOT, 'package.xml'), encoding='utf-8').read()
    assert f'<name>{consts["PACKAGE"]}</name>' in package_xml
    scripts = _console_scripts()
    assert consts['EXECUTABLE'] in scripts
    module, func = scripts[consts['EXECUTABLE']].split(':')
    spec = importlib.util.find_spec(module)
    assert spec is not None
    assert f'def {func}(' in open(spec.origin, encoding='utf-8').read()
    assert consts['NODE_NAME'] == settings.NODE_NAME
    params = os.path.join(ROOT, *consts['PARAMS_FILE'])
    assert os.path.isfile(params)
    assert settings.load_file(params)['model.template']
    # the arguments of the contract are declared
    declared = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, 'id', '') ==
                'DeclareLaunchArgument'}
    assert declared == {'namespace', 'params_file', 'use_sim_time', 'log_level'}
    # setup.cfg installs the executable where ros2 run / launch look for it
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, 'setup.cfg'))
    assert cfg['install']['install_scripts'] == '$base/lib/diffmsm_ros'


def test_installed_files_exist():
    """Every file setup.py installs (launch, config, marker) is present."""
    for folder, pattern in (('launch', '.launch.py'), ('config', '.yaml')):
        names = [n for n in os.listdir(os.path.join(ROOT, folder)) if n.endswith(pattern)]
        assert names
    for name in os.listdir(os.path.join(ROOT, 'config')):
        settings.load_file(os.path.join(ROOT, 'config', name))
    assert os.path.isfile(os.path.join(ROOT, 'resource', 'diffmsm_ros'))


def load_launch_module(path):
    """Import a Python launch file as a module."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path).split('.')[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def package_index(tmp_path, monkeypatch):
    """Register diffmsm_ros in an ament prefix of its own (FindPackageShare finds it)."""
    index = tmp_path / 'share' / 'ament_index' / 'resource_index' / 'packages'
    index.mkdir(parents=True)
    (index / 'diffmsm_ros').touch()
    (tmp_path / 'share' / 'diffmsm_ros').mkdir()
    base = ros2_tools.environment(tmp_path)['AMENT_PREFIX_PATH']   # with the venv's prefix
    monkeypatch.setenv('AMENT_PREFIX_PATH', os.pathsep.join([str(tmp_path), base]))
    return tmp_path


def test_launch_description_loads_with_launch_ros():
    """Import-check and introspection of both Python launch files."""
    ros2_tools.require()
    from launch import LaunchDescription, LaunchIntrospector
    replay = ['IncludeLaunchDescription', "'replay'", "'--wait'"]
    for path, executables in ((LAUNCH, ['diffmsm_node']), (REPLAY_LAUNCH, replay)):
        description = load_launch_module(path).generate_launch_description()
        assert isinstance(description, LaunchDescription)
        text = LaunchIntrospector().format_launch_description(description)
        for name in executables:
            assert name in text, (path, name)


def declared(description, context):
    """{argument: (description, default evaluated in ``context``)} of a launch description."""
    from launch.actions import DeclareLaunchArgument
    from launch.utilities import perform_substitutions
    return {e.name: (e.description, perform_substitutions(context, e.default_value)
                     if e.default_value is not None else None)
            for e in description.entities if isinstance(e, DeclareLaunchArgument)}


@pytest.mark.parametrize('path', FRONT_ENDS, ids=['xml', 'yaml'])
def test_front_ends_declare_what_the_python_launch_file_declares(path, package_index):
    ros2_tools.require()
    from launch import LaunchContext
    from launch.frontend import Parser
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
    from launch_ros.actions import Node
    python = load_launch_module(LAUNCH).generate_launch_description()
    root, parser = Parser.load(path)
    front = parser.parse_description(root)
    context = LaunchContext()
    assert declared(front, context) == declared(python, context)
    share = os.path.join(str(package_index), 'share', 'diffmsm_ros', 'config', 'diffmsm.yaml')
    assert declared(front, context)['params_file'][1] == share
    [node] = [e for e in front.entities if isinstance(e, Node)]
    [reference] = [e for e in python.entities if isinstance(e, Node)]
    for attribute in ('node_package', 'node_executable'):
        values = [perform_substitutions(context, normalize_to_list_of_substitutions(
            getattr(n, attribute))) for n in (node, reference)]
        assert values[0] == values[1], (attribute, values)


@pytest.mark.parametrize('key, name, matches', [
    ('/**', '/exo/diffmsm', True),
    ('/**', '/diffmsm', True),
    ('diffmsm', '/diffmsm', True),
    ('/diffmsm', '/diffmsm', True),
    ('diffmsm', '/exo/diffmsm', False),
    ('/**/diffmsm', '/exo/diffmsm', True),
    ('/**/diffmsm', '/a/b/diffmsm', True),
    ('/exo/*', '/exo/diffmsm', True),
    ('/exo/*', '/left/diffmsm', False),
    ('/exo/diffmsm', '/exo/diffmsm', True),
    ('/exo/diffmsm_x', '/exo/diffmsm', False),
])
def test_params_file_key_matching(key, name, matches):
    ros2_tools.require()
    assert load_launch_module(LAUNCH).key_matches(key, name) is matches


def test_params_file_check_refuses_with_the_reason(tmp_path):
    ros2_tools.require()
    from launch.substitutions.substitution_failure import SubstitutionFailure
    module = load_launch_module(LAUNCH)
    keyed = tmp_path / 'keyed.yaml'
    keyed.write_text(yaml.safe_dump({'diffmsm': {'ros__parameters': {'stale_timeout': 0.2}}}))
    assert module.check_params_file(str(keyed), '') == str(keyed)
    reason = "no parameters for the node /exo/diffmsm (its node keys: 'diffmsm'); key them '/**:'"
    with pytest.raises(SubstitutionFailure, match=re.escape(reason)):
        module.check_params_file(str(keyed), 'exo')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('diffmsm: [unclosed')
    with pytest.raises(SubstitutionFailure, match='not valid YAML'):
        module.check_params_file(str(bad), '')
    with pytest.raises(SubstitutionFailure, match='cannot read it'):
        module.check_params_file(str(tmp_path / 'missing.yaml'), '')
    empty = tmp_path / 'empty.yaml'
    empty.write_text('')
    with pytest.raises(SubstitutionFailure, match='its node keys: none'):
        module.check_params_file(str(empty), '')
    # every bundled file reaches the node in any namespace
    for name in os.listdir(os.path.join(ROOT, 'config')):
        path = os.path.join(ROOT, 'config', name)
        assert module.check_params_file(path, 'left_arm') == path


def test_replay_command_splits_off_ros_arguments():
    assert cli.split_ros_args(['replay', 'bag', '--rate', '2', '--ros-args', '-r',
                               '__ns:=/exo', '--', '--loop']) == (
        ['replay', 'bag', '--rate', '2', '--loop'], ['--ros-args', '-r', '__ns:=/exo'])
    assert cli.split_ros_args(['replay', 'bag']) == (['replay', 'bag'], [])


def test_replay_command_refuses_bad_input(tmp_path, capsys):
    assert cli.main(['replay', str(tmp_path / 'none')]) == 2
    assert 'no bag at' in capsys.readouterr().err
    assert cli.main(['replay', str(tmp_path), '--wait', '-1']) == 2
    assert '--wait must not be negative' in capsys.readouterr().err
    assert cli.main(['replay', str(tmp_path), '--rate', '0']) == 2
    assert '--rate must be positive' in capsys.readouterr().err
