# --- integration: the AMQP publisher against a real rabbitmq-server ---------
# Included from tests/CMakeLists.txt. The fixture starts a private node
# (scripts/rabbitmq-node.sh): AMQP on POD_ROUTER_TEST_AMQP_PORT,
# Erlang distribution on the port after it. Not 35672-35682: rabbitmqctl's
# own distribution ports.
# Below Linux's ephemeral range (32768-60999): a port in it can be taken at
# any moment by an outgoing connection of a test running alongside.
set(POD_ROUTER_TEST_AMQP_PORT 27672)
set(POD_ROUTER_TEST_AMQP_DIR ${CMAKE_BINARY_DIR}/test-run/rabbitmq)
set(POD_ROUTER_RABBITMQ_SCRIPT ${PROJECT_SOURCE_DIR}/scripts/rabbitmq-node.sh)

add_test(NAME rabbitmq_server_start
  COMMAND ${POD_ROUTER_RABBITMQ_SCRIPT} start ${POD_ROUTER_TEST_AMQP_DIR}
    ${POD_ROUTER_TEST_AMQP_PORT})
add_test(NAME rabbitmq_server_stop
  COMMAND ${POD_ROUTER_RABBITMQ_SCRIPT} stop ${POD_ROUTER_TEST_AMQP_DIR}
    ${POD_ROUTER_TEST_AMQP_PORT})
# Brokers boot slowly on a busy machine: tests that start or use one take
# turns (RESOURCE_LOCK) rather than starve each other of the two cores.
set_tests_properties(rabbitmq_server_start PROPERTIES
  FIXTURES_SETUP rabbitmq LABELS integration TIMEOUT 180 RESOURCE_LOCK rabbitmq)
set_tests_properties(rabbitmq_server_stop PROPERTIES
  FIXTURES_CLEANUP rabbitmq LABELS integration TIMEOUT 120)

pkg_check_modules(LIBRABBITMQ REQUIRED IMPORTED_TARGET librabbitmq)
add_executable(integration_amqp_publisher integration/test_amqp_publisher.cpp)
target_link_libraries(integration_amqp_publisher PRIVATE pod_router_core PkgConfig::CMOCKA
  PkgConfig::LIBRABBITMQ)
add_test(NAME integration_amqp_publisher COMMAND integration_amqp_publisher)
# POD_ROUTER_TEST_AMQP_CTL: the command prefix for rabbitmqctl on that node.
set_tests_properties(integration_amqp_publisher PROPERTIES
  LABELS integration TIMEOUT 180 FIXTURES_REQUIRED rabbitmq RESOURCE_LOCK rabbitmq
  ENVIRONMENT "POD_ROUTER_TEST_AMQP_PORT=${POD_ROUTER_TEST_AMQP_PORT};POD_ROUTER_TEST_AMQP_CTL=${POD_ROUTER_RABBITMQ_SCRIPT} ctl ${POD_ROUTER_TEST_AMQP_DIR} ${POD_ROUTER_TEST_AMQP_PORT}")

# The controller's consumer against the same node, events published with the
# publisher above.
add_executable(integration_event_consumer integration/test_event_consumer.cpp)
target_link_libraries(integration_event_consumer PRIVATE pod_router_controller_core
  PkgConfig::CMOCKA PkgConfig::LIBRABBITMQ)
add_test(NAME integration_event_consumer COMMAND integration_event_consumer)
set_tests_properties(integration_event_consumer PROPERTIES
  LABELS integration TIMEOUT 180 FIXTURES_REQUIRED rabbitmq RESOURCE_LOCK rabbitmq
  ENVIRONMENT "POD_ROUTER_TEST_AMQP_PORT=${POD_ROUTER_TEST_AMQP_PORT};POD_ROUTER_TEST_AMQP_CTL=${POD_ROUTER_RABBITMQ_SCRIPT} ctl ${POD_ROUTER_TEST_AMQP_DIR} ${POD_ROUTER_TEST_AMQP_PORT}")
