# The RabbitMQ publisher (amqp_publisher.h) and the connection layer it shares
# with the controller (amqp_connection.hpp), included from this folder's
# CMakeLists.txt once pod_router_core exists. PUBLIC: whatever links the core
# (the nginx module, the controller, the tests) links rabbitmq-c too.
pkg_check_modules(LIBRABBITMQ REQUIRED IMPORTED_TARGET librabbitmq)
target_sources(pod_router_core PRIVATE ${CMAKE_CURRENT_LIST_DIR}/src/amqp_publisher.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/amqp_connection.cpp)
target_link_libraries(pod_router_core PUBLIC PkgConfig::LIBRABBITMQ)
