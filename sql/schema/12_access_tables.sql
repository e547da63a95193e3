-- Who may act for what: the logins allowed to act as the agent of a project ('*': every project),
-- the hosts an agent login may put its sessions and spawns on (none listed: any host; '*': every
-- host), and the hosts a reactor login serves ('*': every host).
-- (Which role may call which function: the role_functions view in 90_roles.sql.)

CREATE TABLE ps_health.agent_projects (
    login    name NOT NULL,
    project  varchar(255) NOT NULL,
    PRIMARY KEY (login, project)
);

CREATE TABLE ps_health.agent_hosts (
    login  name NOT NULL,
    host   varchar(255) NOT NULL,
    PRIMARY KEY (login, host)
);

CREATE TABLE ps_health.reactor_hosts (
    login  name NOT NULL,
    host   varchar(255) NOT NULL,
    PRIMARY KEY (login, host)
);
