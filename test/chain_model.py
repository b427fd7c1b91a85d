"""
A small MJCF chain for multi-joint tests.

Arbitrary axes, merged bodies, a locked joint, a muscle spanning two joints and two spanning
one, and an exoskeleton motor per joint.
"""

CHAIN_XML = """
<mujoco model="chain">
  <compiler angle="radian"/>
  <option timestep="0.002" gravity="0 0 -9.81"/>
  <default>
    <geom contype="0" conaffinity="0"/>
  </default>
  <worldbody>
    <body name="base" pos="0 0 1" euler="0.3 0.2 0.1">
      <site name="o1" pos="0.06 0.02 0"/>
      <site name="o2" pos="-0.05 0.01 0.01"/>
      <body name="upper" pos="0.01 0.02 -0.03" euler="0.1 -0.2 0.3">
        <joint name="shoulder" type="hinge" axis="0.2 0.1 1" pos="0 0 0.01" range="-0.8 1.5"
               damping="0.3" armature="0.02"/>
        <inertial pos="0.01 -0.15 0.02" mass="1.8"
                  fullinertia="0.02 0.005 0.018 0.001 -0.0005 0.0008"/>
        <site name="p1" pos="0.04 -0.12 0"/>
        <site name="p2" pos="-0.03 -0.2 0.01"/>
        <body name="strap" pos="0 -0.2 0.05">
          <geom type="sphere" size="0.02" mass="0.3"/>
        </body>
        <body name="fore" pos="0.0 -0.3 0.0" euler="0 0.2 0">
          <joint name="twist" type="hinge" axis="0 1 0" range="-1 1"/>
          <joint name="elbow" type="hinge" axis="0.05 0.04 1" range="0 2.2" damping="0.5"
                 armature="0.01"/>
          <inertial pos="0 -0.18 0.01" mass="1.4"
                    fullinertia="0.019 0.0016 0.02 0.0002 0.0001 -0.0003"/>
          <site name="f1" pos="0.03 -0.05 0.01"/>
          <site name="f2" pos="-0.025 0.02 0"/>
          <body name="hand" pos="0.01 -0.26 0.02">
            <geom type="box" size="0.02 0.04 0.01" mass="0.4"/>
          </body>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>
    <spatial name="biart_t"><site site="o1"/><site site="p1"/><site site="f1"/></spatial>
    <spatial name="mono_t"><site site="p2"/><site site="f2"/></spatial>
    <spatial name="shoulder_t"><site site="o2"/><site site="p2"/></spatial>
  </tendon>
  <actuator>
    <motor name="exo_shoulder" joint="shoulder" gear="10"/>
    <motor name="exo_elbow" joint="elbow" gear="8"/>
    <muscle name="biart" tendon="biart_t" force="400" lengthrange="0.30 0.48"
            range="0.6 1.4" timeconst="0.01 0.04" ctrllimited="true" ctrlrange="0.001 1"/>
    <muscle name="mono" tendon="mono_t" force="300" lengthrange="0.10 0.20"
            range="0.6 1.3" timeconst="0.01 0.04" ctrllimited="true" ctrlrange="0.001 1"/>
    <muscle name="delt" tendon="shoulder_t" force="500" lengthrange="0.15 0.40"
            range="0.6 1.4" timeconst="0.01 0.04" ctrllimited="true" ctrlrange="0.001 1"/>
  </actuator>
</mujoco>
"""


def write_chain(folder):
    """Write the chain XML into ``folder`` and return its path."""
    path = folder / 'chain.xml'
    path.write_text(CHAIN_XML)
    return str(path)
